//! WSFC's resource and group states, with their CLUSTER_RESOURCE_STATE and CLUSTER_GROUP_STATE
//! values, and how a group's state follows from its resources'.

use serde::{Deserialize, Serialize};

/// A resource's state (CLUSTER_RESOURCE_STATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceState {
    /// 2.
    Online,
    /// 3.
    Offline,
    /// 4.
    Failed,
    /// 129.
    OnlinePending,
    /// 130.
    OfflinePending,
}

impl ResourceState {
    /// WSFC's value.
    pub fn code(self) -> i32 {
        match self {
            ResourceState::Online => 2,
            ResourceState::Offline => 3,
            ResourceState::Failed => 4,
            ResourceState::OnlinePending => 129,
            ResourceState::OfflinePending => 130,
        }
    }
}

/// A group's state (CLUSTER_GROUP_STATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupState {
    /// 206: every resource online.
    Online,
    /// 207: every resource offline, or no resources.
    Offline,
    /// 208: at least one resource failed.
    Failed,
    /// 209: some online, none pending or failed.
    PartialOnline,
    /// 210: at least one pending, none failed.
    Pending,
}

impl GroupState {
    /// WSFC's value.
    pub fn code(self) -> i32 {
        match self {
            GroupState::Online => 206,
            GroupState::Offline => 207,
            GroupState::Failed => 208,
            GroupState::PartialOnline => 209,
            GroupState::Pending => 210,
        }
    }

    /// The group state its resources' states make (WSFC's rules).
    pub fn of(resources: impl IntoIterator<Item = ResourceState>) -> GroupState {
        let (mut any, mut online, mut offline, mut pending, mut failed) = (0, 0, 0, 0, 0);
        for r in resources {
            any += 1;
            match r {
                ResourceState::Online => online += 1,
                ResourceState::Offline => offline += 1,
                ResourceState::Failed => failed += 1,
                ResourceState::OnlinePending | ResourceState::OfflinePending => pending += 1,
            }
        }
        if failed > 0 {
            GroupState::Failed
        } else if pending > 0 {
            GroupState::Pending
        } else if any == 0 || offline == any {
            GroupState::Offline
        } else if online == any {
            GroupState::Online
        } else {
            GroupState::PartialOnline
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceState::*;

    #[test]
    fn group_state_follows_wsfc() {
        assert_eq!(GroupState::of([]), GroupState::Offline);
        assert_eq!(GroupState::of([Online, Online]), GroupState::Online);
        assert_eq!(GroupState::of([Online, Offline]), GroupState::PartialOnline);
        assert_eq!(GroupState::of([Online, OnlinePending]), GroupState::Pending);
        assert_eq!(GroupState::of([Failed, OnlinePending]), GroupState::Failed);
        assert_eq!(GroupState::of([Offline, Offline]), GroupState::Offline);
        assert_eq!(GroupState::Failed.code(), 208);
        assert_eq!(OfflinePending.code(), 130);
    }
}
