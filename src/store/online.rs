//! The list of who is online (`GET /users/online` without `userIds`): users with at least one
//! live connection, page by page.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A user with at least one live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineUser {
    pub user_id: String,
    /// Live connections of the user.
    pub connections: u32,
    /// Epoch milliseconds of the latest connect or disconnect, when the record is still kept.
    pub last_active_at: Option<i64>,
}

/// Where the next page of the online list starts. Opaque to callers: the HTTP API hands it
/// out encoded and takes it back ([`crate::http`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineCursor {
    /// The backend's resume key (DynamoDB's `LastEvaluatedKey` of the `byUser` Scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<BTreeMap<String, String>>,
    /// The last user of the previous page, already counted in full: rows of this user at the
    /// start of the next read are skipped, so a user is never listed twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlinePage {
    pub users: Vec<OnlineUser>,
    /// `None`: this was the last page.
    pub next: Option<OnlineCursor>,
}

/// Users per page of the online list unless the caller asks: 100; at most 1,000.
pub const DEFAULT_ONLINE_LIMIT: usize = 100;
pub const MAX_ONLINE_LIMIT: usize = 1000;
