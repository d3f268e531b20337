//! Fakes the services' tests share. Today: a scripted WhatsApp gateway that speaks the
//! gateway's gRPC contract, for the dispatcher's and status-web's tests.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use abtrack_proto::gateway::v1 as gpb;

/// The code the scripted gateway answers to a pair-code request.
pub const PAIR_CODE: &str = "ABCD-EFGH";

/// What a send answers, given the request and how many times its job was sent
/// (1 the first time): `Ok` is a success with the message id `m-<job id>`.
pub type Script = Arc<
    dyn Fn(gpb::SendRequest, u32) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>
        + Send
        + Sync,
>;

/// A gateway whose Watch stream replays its event log (only ever appended to) to
/// every subscriber, then follows it, and whose sends
/// answer as the script says. A pair code is [`PAIR_CODE`], refused for a phone
/// with an `x`; logouts are counted.
#[derive(Clone)]
pub struct ScriptedGateway {
    events: watch::Receiver<Vec<gpb::GatewayEvent>>,
    script: Script,
    /// Send calls received, by job id.
    pub calls: Arc<Mutex<HashMap<String, u32>>>,
    /// Logout calls received.
    pub logouts: Arc<Mutex<u32>>,
}

impl ScriptedGateway {
    pub fn new<F, Fut>(events: watch::Receiver<Vec<gpb::GatewayEvent>>, script: F) -> Self
    where
        F: Fn(gpb::SendRequest, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        Self {
            events,
            script: Arc::new(move |request, call| Box::pin(script(request, call))),
            calls: Arc::default(),
            logouts: Arc::default(),
        }
    }

    /// The connection state event of `status`, as the scripted gateway reports it.
    pub fn state(status: gpb::ConnectionStatus) -> gpb::GatewayEvent {
        gpb::GatewayEvent {
            event: Some(gpb::gateway_event::Event::State(gpb::ConnectionState {
                status: status as i32,
                mode: "scripted".into(),
                detail: "scripted gateway".into(),
                push_name: if status == gpb::ConnectionStatus::Connected {
                    "Sekolah Test".into()
                } else {
                    String::new()
                },
                own_number: if status == gpb::ConnectionStatus::Connected {
                    "6281234567890".into()
                } else {
                    String::new()
                },
                ..Default::default()
            })),
        }
    }
}

#[tonic::async_trait]
impl gpb::gateway_server::Gateway for ScriptedGateway {
    async fn send(
        &self,
        request: Request<gpb::SendRequest>,
    ) -> Result<Response<gpb::SendResponse>, Status> {
        let request = request.into_inner();
        let call = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(request.job_id.clone()).or_default();
            *n += 1;
            *n
        };
        let job_id = request.job_id.clone();
        // The number as the real gateway normalises it (Indonesia's code by default).
        let recipient = abtrack_proto::normalize_recipient(&request.to, "62")
            .map(|jid| jid.to_string())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        (self.script)(request, call).await?;
        Ok(Response::new(gpb::SendResponse {
            message_id: format!("m-{job_id}"),
            recipient,
            sent_at: None,
            duplicate: false,
            recipient_lid: String::new(),
            media: None,
        }))
    }

    async fn check_number(
        &self,
        _: Request<gpb::CheckNumberRequest>,
    ) -> Result<Response<gpb::CheckNumberResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<gpb::GatewayEvent, Status>> + Send>>;

    async fn watch(
        &self,
        _: Request<gpb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut events = self.events.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            loop {
                let fresh: Vec<_> = events.borrow_and_update()[sent..].to_vec();
                sent += fresh.len();
                for event in fresh {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if events.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn request_pair_code(
        &self,
        request: Request<gpb::RequestPairCodeRequest>,
    ) -> Result<Response<gpb::RequestPairCodeResponse>, Status> {
        if request.into_inner().phone.contains('x') {
            return Err(abtrack_proto::reason::field_error(
                tonic::Code::InvalidArgument,
                "phone",
                "not a phone number",
            ));
        }
        Ok(Response::new(gpb::RequestPairCodeResponse {
            code: PAIR_CODE.into(),
        }))
    }

    async fn logout(
        &self,
        _: Request<gpb::LogoutRequest>,
    ) -> Result<Response<gpb::LogoutResponse>, Status> {
        *self.logouts.lock().unwrap() += 1;
        Ok(Response::new(gpb::LogoutResponse {}))
    }
}
