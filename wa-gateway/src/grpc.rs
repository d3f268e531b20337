//! The gRPC adapter: wire types in, domain calls, wire types out.

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use abtrack_proto::gateway::v1 as pb;
use abtrack_proto::time::{opt_timestamp, to_timestamp};

use crate::gateway::{Event, Gateway};
use crate::messenger::{ConnectionState, ReceiptKind};
use crate::pacing::PacingUse;

pub struct GatewayService {
    gateway: Gateway,
    /// The account this gateway holds: named in its state, checked on each send.
    account: String,
}

impl GatewayService {
    pub fn new(gateway: Gateway, account: impl Into<String>) -> Self {
        Self {
            gateway,
            account: account.into(),
        }
    }
}

/// The media of a send request, its declared fields checked as at the dispatcher.
fn media_request(media: pb::Media) -> crate::Result<crate::media::Request> {
    use crate::media::Source;
    use abtrack_proto::media as rules;
    let bad = |e: String| crate::Error::BadMedia(e);
    let source = match media.source {
        Some(pb::media::Source::Url(url)) => {
            rules::check_url(&url).map_err(|e| bad(format!("media.url {e}")))?;
            Source::Url(url)
        }
        Some(pb::media::Source::Data(data)) => {
            rules::check_inline(data.len()).map_err(|e| bad(format!("media.data {e}")))?;
            Source::Data(data)
        }
        Some(pb::media::Source::Storage(object)) => Source::Storage {
            name: object.name,
            url: object.url,
            bearer_token: object.bearer_token,
        },
        None => return Err(bad("media has no url or data".into())),
    };
    let declared = rules::check_declared(Some(&media.mime_type), Some(&media.file_name))
        .map_err(|(field, e)| bad(format!("{field} {e}")))?;
    Ok(crate::media::Request {
        source,
        mime_type: declared.mime_type,
        file_name: declared.file_name,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::GatewayEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::gateway_server::Gateway for GatewayService {
    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let deadline = grpc_timeout(&request).map(|t| Instant::now() + t);
        let req = request.into_inner();
        if !req.account.is_empty() && req.account != self.account {
            return Err(Status::failed_precondition(format!(
                "this gateway holds account {:?}, not {:?}; point the dispatcher's address for {:?} at that account's gateway",
                self.account, req.account, req.account
            )));
        }
        let media = req.media.map(media_request).transpose()?;
        let outcome = self
            .gateway
            .send(&req.job_id, &req.to, &req.message, media, deadline)
            .await?;
        Ok(Response::new(pb::SendResponse {
            message_id: outcome.message_id,
            recipient: outcome.recipient,
            sent_at: Some(to_timestamp(outcome.sent_at)),
            duplicate: outcome.duplicate,
            recipient_lid: outcome.recipient_lid.unwrap_or_default(),
            media: outcome.media.map(|m| pb::SentMedia {
                kind: m.kind.as_str().to_owned(),
                mime_type: m.mime_type,
                file_name: m.file_name.unwrap_or_default(),
                size: m.size,
            }),
        }))
    }

    async fn check_number(
        &self,
        request: Request<pb::CheckNumberRequest>,
    ) -> Result<Response<pb::CheckNumberResponse>, Status> {
        let (jid, check) = self
            .gateway
            .check_number(&request.into_inner().phone)
            .await?;
        Ok(Response::new(pb::CheckNumberResponse {
            recipient: jid.to_string(),
            on_whatsapp: check.on_whatsapp,
            lid: check.lid.unwrap_or_default(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let mut state = self.gateway.state();
        let mut pacing = self.gateway.pacing_use();
        let mut events = self.gateway.events();
        let account = self.account.clone();
        self.gateway.tasks().spawn(async move {
            let first = state_event(
                &state.borrow_and_update(),
                &pacing.borrow_and_update(),
                &account,
            );
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let message = tokio::select! {
                    changed = state.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let current = state.borrow_and_update().clone();
                        state_event(&current, &pacing.borrow(), &account)
                    }
                    changed = pacing.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let current = *pacing.borrow_and_update();
                        state_event(&state.borrow(), &current, &account)
                    }
                    event = events.recv() => match event {
                        Ok(event) => gateway_event(event),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "a watcher fell behind");
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    () = tx.closed() => return,
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn request_pair_code(
        &self,
        request: Request<pb::RequestPairCodeRequest>,
    ) -> Result<Response<pb::RequestPairCodeResponse>, Status> {
        let code = self
            .gateway
            .request_pair_code(&request.into_inner().phone)
            .await?;
        Ok(Response::new(pb::RequestPairCodeResponse { code }))
    }

    async fn logout(
        &self,
        _request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.gateway.logout().await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }
}

fn state_event(state: &ConnectionState, pacing: &PacingUse, account: &str) -> pb::GatewayEvent {
    pb::GatewayEvent {
        event: Some(pb::gateway_event::Event::State(pb::ConnectionState {
            status: state.status as i32,
            mode: state.mode.to_owned(),
            detail: state.detail.clone(),
            own_number: state.own_number.clone(),
            push_name: state.push_name.clone(),
            retry_at: opt_timestamp(state.retry_at),
            banned_until: opt_timestamp(state.banned_until),
            time_lock_until: opt_timestamp(state.time_lock_until),
            new_chat_quota: state.new_chat_quota.map(|q| pb::NewChatQuota {
                used: q.used,
                total: q.total,
                cycle_ends_at: opt_timestamp(q.cycle_ends_at),
            }),
            since: Some(to_timestamp(state.since)),
            account: account.to_owned(),
            pacing: Some(pb::Pacing {
                min_interval_ms: pacing.config.min_interval.as_millis() as u64,
                jitter_ms: pacing.config.jitter.as_millis() as u64,
                daily_cap: pacing.config.daily_cap,
                sent_last_day: pacing.sent_last_day,
                cap_frees_at: opt_timestamp(pacing.cap_frees_at),
            }),
        })),
    }
}

fn gateway_event(event: Event) -> pb::GatewayEvent {
    use pb::gateway_event::Event as E;
    let event = match event {
        Event::Qr { code, expires_at } => E::Qr(pb::QrCode {
            code,
            expires_at: Some(to_timestamp(expires_at)),
        }),
        Event::PairCode { code, expires_at } => E::PairCode(pb::PairCode {
            code,
            expires_at: Some(to_timestamp(expires_at)),
        }),
        Event::Receipt {
            job_id,
            message_id,
            kind,
            at,
        } => E::Receipt(pb::Receipt {
            job_id,
            message_id,
            kind: match kind {
                ReceiptKind::Delivered => pb::ReceiptKind::Delivered,
                ReceiptKind::Read => pb::ReceiptKind::Read,
            } as i32,
            at: Some(to_timestamp(at)),
        }),
        Event::DeliveryOverdue {
            job_id,
            message_id,
            at,
        } => E::Receipt(pb::Receipt {
            job_id,
            message_id,
            kind: pb::ReceiptKind::DeliveryOverdue as i32,
            at: Some(to_timestamp(at)),
        }),
    };
    pb::GatewayEvent { event: Some(event) }
}

/// The caller's deadline from the `grpc-timeout` header (what `Request::set_timeout`
/// sends), e.g. `30S` or `1500m`.
fn grpc_timeout<T>(request: &Request<T>) -> Option<Duration> {
    let raw = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(raw)
}

fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (value, unit) = raw.split_at(raw.len() - 1);
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None);
    }
}
