//! The cluster's errors, carrying the Win32 code Windows Server Failover Clustering returns for
//! the same refusal where there is one.

use std::io;

/// WSFC's error codes for the refusals the model shares with it (winerror.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Win32 {
    /// ERROR_INVALID_PARAMETER: a dependency on a resource of another group, a bad value.
    InvalidParameter = 87,
    /// ERROR_CIRCULAR_DEPENDENCY: a resource depends on itself, directly or not.
    CircularDependency = 1059,
    /// ERROR_DEPENDENCY_ALREADY_EXISTS.
    DependencyAlreadyExists = 5003,
    /// ERROR_RESOURCE_NOT_FOUND.
    ResourceNotFound = 5007,
    /// ERROR_GROUP_NOT_FOUND.
    GroupNotFound = 5013,
    /// ERROR_RESOURCE_ONLINE.
    ResourceOnline = 5019,
    /// ERROR_CLUSTER_NODE_NOT_FOUND.
    NodeNotFound = 5042,
    /// ERROR_HOST_NODE_NOT_AVAILABLE: no possible owner is up to take the group.
    HostNodeNotAvailable = 5005,
    /// ERROR_OBJECT_ALREADY_EXISTS.
    ObjectAlreadyExists = 5010,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The model refused a definition or a change, as WSFC would.
    #[error("{} ({}): {why}", .code.name(), *.code as u32)]
    Refused {
        /// WSFC's error code.
        code: Win32,
        /// What was wrong.
        why: String,
    },
    /// The cluster file could not be read.
    #[error("cluster file: {0}")]
    Config(String),
    /// The cluster directory or a disk failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The coordination store (etcd) failed or could not be reached.
    #[error("coordination: {0}")]
    Coordination(String),
    /// The queue engine refused.
    #[error(transparent)]
    Engine(#[from] mqcore::Error),
}

impl ClusterError {
    /// A refusal with WSFC's code.
    pub fn refused(code: Win32, why: impl Into<String>) -> ClusterError {
        ClusterError::Refused {
            code,
            why: why.into(),
        }
    }

    /// WSFC's code, for a refusal.
    pub fn win32(&self) -> Option<Win32> {
        match self {
            ClusterError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl Win32 {
    /// The code's name in winerror.h.
    pub fn name(self) -> &'static str {
        match self {
            Win32::InvalidParameter => "ERROR_INVALID_PARAMETER",
            Win32::CircularDependency => "ERROR_CIRCULAR_DEPENDENCY",
            Win32::DependencyAlreadyExists => "ERROR_DEPENDENCY_ALREADY_EXISTS",
            Win32::ResourceNotFound => "ERROR_RESOURCE_NOT_FOUND",
            Win32::GroupNotFound => "ERROR_GROUP_NOT_FOUND",
            Win32::ResourceOnline => "ERROR_RESOURCE_ONLINE",
            Win32::NodeNotFound => "ERROR_CLUSTER_NODE_NOT_FOUND",
            Win32::HostNodeNotAvailable => "ERROR_HOST_NODE_NOT_AVAILABLE",
            Win32::ObjectAlreadyExists => "ERROR_OBJECT_ALREADY_EXISTS",
        }
    }
}

impl From<ClusterError> for mqcore::Error {
    /// For callers that speak MSMQ's errors: a refusal keeps WSFC's code and name in its text.
    fn from(e: ClusterError) -> mqcore::Error {
        use mqcore::ErrorCode;
        match e {
            ClusterError::Engine(e) => e,
            ClusterError::Refused { code, why } => mqcore::Error::new(
                ErrorCode::InvalidParameter,
                format!("{} ({}): {why}", code.name(), code as u32),
            ),
            ClusterError::Config(why) => mqcore::Error::new(ErrorCode::InvalidParameter, why),
            e @ ClusterError::Coordination(_) => {
                mqcore::Error::new(ErrorCode::ServiceNotAvailable, e.to_string())
            }
            e @ ClusterError::Io { .. } => {
                mqcore::Error::new(ErrorCode::ServiceNotAvailable, e.to_string())
            }
        }
    }
}

/// Adds what was being done to an I/O error.
pub(crate) fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// The cluster's result.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
