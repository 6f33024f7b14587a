//! "Now", injectable: request dates, credential expiry and metadata-token renewal are tested without
//! waiting, and the lab can run hosts on a skewed clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of "now".
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}
