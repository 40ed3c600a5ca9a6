//! What a queue is, as MSMQ describes it: its properties (`PROPID_Q_*`), the changes that may
//! be made to them, what a listing shows, and how a lookup id is navigated. Data only.

use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::name::QueueName;
use crate::queue::store::LookupId;

/// Longest queue label (MQ_MAX_Q_LABEL_LEN).
pub const MAX_QUEUE_LABEL_LEN: usize = 124;

/// A receive or peek timeout that never ends (MSMQ's `INFINITE`).
pub const INFINITE: Duration = Duration::MAX;

/// The properties of a queue (`PROPID_Q_*`). The defaults are MSMQ's: not transactional, no
/// journal, no quotas, no label, base priority 0.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct QueueProps {
    /// `PROPID_Q_TRANSACTION`: fixed at creation.
    pub transactional: bool,
    /// `PROPID_Q_JOURNAL`: keep a copy of every message received from the queue.
    pub journal: bool,
    /// `PROPID_Q_QUOTA` in kilobytes; `None` is INFINITE.
    pub quota_kb: Option<u32>,
    /// `PROPID_Q_JOURNAL_QUOTA` in kilobytes; `None` is INFINITE.
    pub journal_quota_kb: Option<u32>,
    /// `PROPID_Q_LABEL`: at most 124 characters.
    pub label: String,
    /// `PROPID_Q_BASEPRIORITY`.
    pub base_priority: i16,
    /// `PROPID_Q_AUTHENTICATE`: only authenticated senders (enforced by the network server; an
    /// in-process sender is trusted).
    pub authenticate: bool,
}

impl QueueProps {
    /// Default properties of a transactional queue.
    pub fn transactional() -> QueueProps {
        QueueProps {
            transactional: true,
            ..QueueProps::default()
        }
    }

    /// Checks MSMQ's limits.
    pub(crate) fn validate(&self) -> Result<()> {
        let len = self.label.encode_utf16().count();
        if len > MAX_QUEUE_LABEL_LEN {
            return Err(Error::new(
                ErrorCode::IllegalPropertyValue,
                format!("queue label has {len} characters; the limit is {MAX_QUEUE_LABEL_LEN}"),
            ));
        }
        Ok(())
    }
}

/// A change to a queue's properties (`MQSetQueueProperties`); `None` leaves a property alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueUpdate {
    /// Refused: the transactional type is fixed at creation (MQ_ERROR_PROPERTY_NOTALLOWED).
    pub transactional: Option<bool>,
    /// New journal setting.
    pub journal: Option<bool>,
    /// New quota (`Some(None)` is INFINITE).
    pub quota_kb: Option<Option<u32>>,
    /// New journal quota.
    pub journal_quota_kb: Option<Option<u32>>,
    /// New label.
    pub label: Option<String>,
    /// New base priority.
    pub base_priority: Option<i16>,
    /// New authenticate setting.
    pub authenticate: Option<bool>,
}

/// What management shows about a queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueInfo {
    /// The queue's path name.
    pub path: QueueName,
    /// Its `PRIVATE=` id.
    pub id: u32,
    /// Its properties.
    pub props: QueueProps,
    /// Messages in the queue, locked ones included (`PROPID_MGMT_QUEUE_MESSAGE_COUNT`).
    pub message_count: usize,
    /// Of those, the ones locked to a transaction that received them (or to a receive in
    /// flight): invisible to other receivers until it commits or aborts. The rest are ready.
    #[serde(default)]
    pub locked_count: usize,
    /// Bytes counted against the quota (`PROPID_MGMT_QUEUE_BYTES_IN_QUEUE`).
    pub bytes: u64,
    /// Messages in its journal.
    pub journal_count: usize,
    /// Names of its subqueues (`PROPID_MGMT_QUEUE_SUBQUEUE_NAMES`).
    pub subqueues: Vec<String>,
    /// Messages that entered the queue since the queue manager started (recovered ones
    /// included). Less `message_count`, what left it: received, purged, expired, or moved to a
    /// subqueue.
    #[serde(default)]
    pub arrived_total: u64,
}

/// How to find a message for `MQReceiveMessageByLookupId`. Lookup ids grow in arrival order, so
/// `Next` and `Previous` walk in that order and work even when the given id has left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LookupAction {
    /// The message with the lowest lookup id (`MQ_LOOKUP_*_FIRST`).
    First,
    /// The message with the highest lookup id (`MQ_LOOKUP_*_LAST`).
    Last,
    /// Exactly this message (`MQ_LOOKUP_*_CURRENT`).
    Current(LookupId),
    /// The first message after this lookup id (`MQ_LOOKUP_*_NEXT`).
    Next(LookupId),
    /// The last message before this lookup id (`MQ_LOOKUP_*_PREV`).
    Previous(LookupId),
}
