//! Connect's paged lists, read from the newest down to what the caller already has: a
//! printer's event feed and job list, and the account's notifications.

use super::client::{ConnectClient, ConnectError, FeedBatch};
use super::model::{EventPage, FeedEvent, Job, JobList, Notification, NotificationPage};

/// Event feed page size and the most pages read in one catch-up.
pub const EVENTS_PAGE: u64 = 100;
pub const EVENTS_MAX_PAGES: u64 = 20;
/// Jobs per page of a printer's job list, and pages read at most (jobs that ended while the
/// gateway was stopped: 100 at most are found).
pub const JOBS_PAGE: u64 = 20;
pub const JOBS_MAX_PAGES: u64 = 5;

impl ConnectClient {
    /// Feed events created at or after `from` (Unix seconds), oldest first, paging through
    /// newest-first pages. Entries without an event name or time are skipped.
    pub async fn events_since(
        &self,
        uuid: &str,
        from: Option<f64>,
    ) -> Result<Vec<FeedEvent>, ConnectError> {
        self.feed(uuid, from).await.map(|batch| batch.events)
    }

    /// [`ConnectClient::events_since`], with Connect's clock as the feed reports it. Without
    /// `from` only the newest page is read: a printer's first read places its cursor after
    /// the newest event and publishes nothing, so older pages would be requests for nothing.
    pub async fn feed(&self, uuid: &str, from: Option<f64>) -> Result<FeedBatch, ConnectError> {
        let mut all = Vec::new();
        let mut server_now = None;
        let mut capped = false;
        let path = format!("/app/printers/{uuid}/events");
        let pages = if from.is_some() { EVENTS_MAX_PAGES } else { 1 };
        for page_no in 0..pages {
            let mut query = vec![
                ("limit", EVENTS_PAGE.to_string()),
                ("offset", (page_no * EVENTS_PAGE).to_string()),
            ];
            if let Some(from) = from {
                query.push(("from", format!("{}", from.floor() as i64)));
            }
            let page: EventPage = self.get_json(&path, &query).await?;
            if page_no == 0 {
                // Without a `to` in the request, `pager.to` is Connect's "now".
                server_now = page.pager.to.filter(|t| t.is_finite());
            }
            let n = page.events.len() as u64;
            all.extend(page.events.into_iter().filter_map(FeedEvent::from_value));
            if n < EVENTS_PAGE {
                break;
            }
            capped = from.is_some() && page_no + 1 == pages;
        }
        all.sort_by(|a, b| a.created.total_cmp(&b.created));
        Ok(FeedBatch {
            events: all,
            server_now,
            capped,
        })
    }

    /// The printer's jobs from the newest down to job `after` (included when listed), oldest
    /// first, paging through Connect's newest-first list (at most [`JOBS_MAX_PAGES`] pages);
    /// `after` `None`: only the newest job.
    pub async fn jobs_after(
        &self,
        uuid: &str,
        after: Option<i64>,
    ) -> Result<Vec<Job>, ConnectError> {
        let path = format!("/app/printers/{uuid}/jobs");
        let limit = if after.is_some() { JOBS_PAGE } else { 1 };
        let mut all: Vec<Job> = Vec::new();
        for page_no in 0..JOBS_MAX_PAGES {
            let query = [
                ("limit", limit.to_string()),
                ("offset", (page_no * limit).to_string()),
            ];
            let page: JobList = self.get_json(&path, &query).await?;
            let n = page.jobs.len() as u64;
            let reached = after.is_none_or(|a| page.jobs.iter().any(|j| j.id <= a));
            all.extend(page.jobs);
            if reached || n < limit {
                break;
            }
        }
        all.sort_by_key(|j| j.id);
        all.dedup_by_key(|j| j.id);
        Ok(all)
    }

    /// The account's notifications from the newest down to id `after` (included when
    /// listed), paging through Connect's newest-first list (at most [`JOBS_MAX_PAGES`] pages
    /// of [`JOBS_PAGE`]); `after` `None`: one page. Entries without an id are skipped.
    pub async fn notifications_after(
        &self,
        after: Option<i64>,
    ) -> Result<Vec<Notification>, ConnectError> {
        let mut all = Vec::new();
        for page_no in 0..JOBS_MAX_PAGES {
            let query = [
                ("limit", JOBS_PAGE.to_string()),
                ("offset", (page_no * JOBS_PAGE).to_string()),
            ];
            let page: NotificationPage = self.get_json("/app/notifications", &query).await?;
            let n = page.notifications.len() as u64;
            let before = all.len();
            all.extend(
                page.notifications
                    .into_iter()
                    .filter_map(Notification::from_value),
            );
            let reached =
                after.is_none_or(|a| all[before..].iter().any(|x: &Notification| x.id <= a));
            if reached || n < JOBS_PAGE {
                break;
            }
        }
        Ok(all)
    }
}
