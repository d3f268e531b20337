//! One listen stream: its targets, and after every change the documents that entered,
//! changed in or left each target's result set, closed by a global snapshot marker
//! (`NO_CHANGE` with a read time), as Cloud Firestore sends them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use prost_types::Timestamp;
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use crate::pb::google::firestore::v1::{
    self as pb, listen_request, listen_response::ResponseType, target, target_change,
};
use crate::query::Query;
use crate::store::Store;

enum Matcher {
    Query(Box<Query>),
    Documents(Vec<String>),
}

struct Target {
    matcher: Matcher,
    once: bool,
    /// Document name -> update time last sent.
    sent: HashMap<String, Timestamp>,
}

pub struct Listen {
    pub store: Store,
    pub broken: watch::Receiver<bool>,
    pub tx: mpsc::Sender<Result<pb::ListenResponse, Status>>,
}

fn response(r: ResponseType) -> Result<pb::ListenResponse, Status> {
    Ok(pb::ListenResponse {
        response_type: Some(r),
    })
}

fn target_change(
    kind: target_change::TargetChangeType,
    ids: Vec<i32>,
    read_time: Option<Timestamp>,
) -> ResponseType {
    ResponseType::TargetChange(pb::TargetChange {
        target_change_type: kind as i32,
        target_ids: ids,
        cause: None,
        resume_token: read_time
            .map(|t| format!("{}.{}", t.seconds, t.nanos).into_bytes())
            .unwrap_or_default(),
        read_time,
    })
}

impl Listen {
    pub async fn run(mut self, mut requests: Streaming<pb::ListenRequest>) {
        let listens = std::sync::Arc::clone(&self.store.listens);
        listens.fetch_add(1, Ordering::SeqCst);
        self.serve(&mut requests).await;
        listens.fetch_sub(1, Ordering::SeqCst);
    }

    async fn serve(&mut self, requests: &mut Streaming<pb::ListenRequest>) {
        let mut targets: HashMap<i32, Target> = HashMap::new();
        let mut version = self.store.subscribe();
        let mut broken = self.broken.clone();
        loop {
            tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(req)) => {
                        if let Err(status) = self.on_request(req, &mut targets).await {
                            let _ = self.tx.send(Err(status)).await;
                            return;
                        }
                    }
                    _ => return,
                },
                changed = version.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !self.push_changes(&mut targets).await {
                        return;
                    }
                }
                _ = broken.changed() => {
                    if *broken.borrow() {
                        let _ = self.tx.send(Err(Status::unavailable("listen stream broken"))).await;
                        return;
                    }
                }
                () = self.tx.closed() => return,
            }
        }
    }

    async fn on_request(
        &mut self,
        req: pb::ListenRequest,
        targets: &mut HashMap<i32, Target>,
    ) -> Result<(), Status> {
        match req.target_change {
            Some(listen_request::TargetChange::AddTarget(t)) => {
                let matcher = match t.target_type {
                    Some(target::TargetType::Query(q)) => {
                        let Some(target::query_target::QueryType::StructuredQuery(sq)) =
                            q.query_type
                        else {
                            return Err(Status::invalid_argument("query target without a query"));
                        };
                        if sq.limit.is_some() || sq.offset > 0 {
                            return Err(Status::unimplemented(
                                "listening on a query with a limit or offset is not supported by this emulator",
                            ));
                        }
                        Matcher::Query(Box::new(Query::new(&q.parent, &sq)?))
                    }
                    Some(target::TargetType::Documents(d)) => Matcher::Documents(d.documents),
                    None => return Err(Status::invalid_argument("target without a type")),
                };
                if targets.contains_key(&t.target_id) {
                    return Err(Status::invalid_argument(format!(
                        "target id {} is already in use",
                        t.target_id
                    )));
                }
                let target = Target {
                    matcher,
                    once: t.once,
                    sent: HashMap::new(),
                };
                self.send(target_change(
                    target_change::TargetChangeType::Add,
                    vec![t.target_id],
                    None,
                ))
                .await;
                targets.insert(t.target_id, target);
                let read_time = self.store.lock().read_time();
                self.sync(t.target_id, targets).await?;
                self.send(target_change(
                    target_change::TargetChangeType::Current,
                    vec![t.target_id],
                    Some(read_time),
                ))
                .await;
                self.send(target_change(
                    target_change::TargetChangeType::NoChange,
                    vec![],
                    Some(read_time),
                ))
                .await;
                if targets.get(&t.target_id).is_some_and(|t| t.once) {
                    targets.remove(&t.target_id);
                    self.send(target_change(
                        target_change::TargetChangeType::Remove,
                        vec![t.target_id],
                        None,
                    ))
                    .await;
                }
            }
            Some(listen_request::TargetChange::RemoveTarget(id))
                if targets.remove(&id).is_some() =>
            {
                self.send(target_change(
                    target_change::TargetChangeType::Remove,
                    vec![id],
                    None,
                ))
                .await;
            }
            Some(listen_request::TargetChange::RemoveTarget(_)) | None => {}
        }
        Ok(())
    }

    /// Sends what changed in one target since it was last synchronised.
    async fn sync(&mut self, id: i32, targets: &mut HashMap<i32, Target>) -> Result<bool, Status> {
        let Some(target) = targets.get_mut(&id) else {
            return Ok(false);
        };
        let (now, read_time) = {
            let state = self.store.lock();
            let mut now = HashMap::new();
            match &target.matcher {
                Matcher::Query(q) => {
                    for doc in state.docs.values() {
                        if q.matches(doc)? {
                            now.insert(doc.name.clone(), doc.clone());
                        }
                    }
                }
                Matcher::Documents(names) => {
                    for name in names {
                        if let Some(doc) = state.docs.get(name) {
                            now.insert(name.clone(), doc.clone());
                        }
                    }
                }
            }
            (now, state.read_time())
        };
        let mut out = Vec::new();
        for (name, doc) in &now {
            let version = doc.update_time.unwrap_or_default();
            if target.sent.get(name) != Some(&version) {
                target.sent.insert(name.clone(), version);
                out.push(ResponseType::DocumentChange(pb::DocumentChange {
                    document: Some(doc.clone()),
                    target_ids: vec![id],
                    removed_target_ids: vec![],
                }));
            }
        }
        let gone: Vec<String> = target
            .sent
            .keys()
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            target.sent.remove(&name);
            let deleted = !self.store.lock().docs.contains_key(&name);
            out.push(if deleted {
                ResponseType::DocumentDelete(pb::DocumentDelete {
                    document: name,
                    removed_target_ids: vec![id],
                    read_time: Some(read_time),
                })
            } else {
                ResponseType::DocumentRemove(pb::DocumentRemove {
                    document: name,
                    removed_target_ids: vec![id],
                    read_time: Some(read_time),
                })
            });
        }
        let any = !out.is_empty();
        for r in out {
            self.send(r).await;
        }
        Ok(any)
    }

    /// Brings every target up to date; false once the client is gone.
    async fn push_changes(&mut self, targets: &mut HashMap<i32, Target>) -> bool {
        let ids: Vec<i32> = targets.keys().copied().collect();
        let mut any = false;
        for id in ids {
            match self.sync(id, targets).await {
                Ok(changed) => any |= changed,
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    return false;
                }
            }
        }
        if any {
            let read_time = self.store.lock().read_time();
            self.send(target_change(
                target_change::TargetChangeType::NoChange,
                vec![],
                Some(read_time),
            ))
            .await;
        }
        !self.tx.is_closed()
    }

    async fn send(&self, r: ResponseType) {
        let _ = self.tx.send(response(r)).await;
    }
}
