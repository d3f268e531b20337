//! `GET /api/stats`: how the last 24 hours and the last 30 days went, as the
//! dispatcher counts them, in the operator's time.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use abtrack_proto::dispatcher::v1 as dpb;

use crate::AppState;
use crate::api::{from_dispatcher, request};
use crate::error::ApiError;
use crate::snapshot::ts;

#[derive(Debug, Default, Deserialize)]
pub struct StatsQuery {
    /// Minutes east of UTC (Jakarta: 420); what the browser's clock says.
    #[serde(rename = "utcOffset")]
    utc_offset: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BucketView {
    start: Option<String>,
    sent: u64,
    delivered: u64,
    read: u64,
    failed: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TotalsView {
    sent: u64,
    delivered: u64,
    read: u64,
    failed: u64,
    /// Of the sent, the share delivered (0 to 1); `null` when none was sent.
    delivered_share: Option<f64>,
    read_share: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReasonView {
    code: String,
    count: u64,
    message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsView {
    hours: Vec<BucketView>,
    days: Vec<BucketView>,
    reasons: Vec<ReasonView>,
    last_day: TotalsView,
    last_month: TotalsView,
    utc_offset: i32,
    at: Option<String>,
}

fn bucket(b: &dpb::StatsBucket) -> BucketView {
    BucketView {
        start: ts(&b.start),
        sent: b.sent,
        delivered: b.delivered,
        read: b.read,
        failed: b.failed,
    }
}

fn totals(t: Option<&dpb::StatsTotals>) -> TotalsView {
    let t = t.cloned().unwrap_or_default();
    let share = |n: u64| (t.sent > 0).then(|| n as f64 / t.sent as f64);
    TotalsView {
        sent: t.sent,
        delivered: t.delivered,
        read: t.read,
        failed: t.failed,
        delivered_share: share(t.delivered),
        read_share: share(t.read),
    }
}

pub async fn stats(
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let offset = match query.utc_offset.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i32>()
            .ok()
            .filter(|m| (-840..=840).contains(m))
            .ok_or_else(|| {
                ApiError::bad_request(
                    Some("utcOffset"),
                    "utcOffset: expected minutes east of UTC, from -840 to 840 (Jakarta: 420)",
                )
            })?,
    };
    let mut client = state.dispatcher.clone();
    let stats = client
        .get_stats(request(dpb::StatsRequest {
            utc_offset_minutes: offset,
        }))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    Ok(Json(StatsView {
        hours: stats.hours.iter().map(bucket).collect(),
        days: stats.days.iter().map(bucket).collect(),
        reasons: stats
            .reasons
            .iter()
            .map(|r| ReasonView {
                code: r.code.clone(),
                count: r.count,
                message: r.message.clone(),
            })
            .collect(),
        last_day: totals(stats.last_day.as_ref()),
        last_month: totals(stats.last_month.as_ref()),
        utc_offset: offset,
        at: ts(&stats.at),
    }))
}
