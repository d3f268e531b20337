//! One client connection: the WebSocket, the framing (3-byte length prefixes, the
//! `WA` header before the first frame), the Noise handshake, then encrypted binary
//! nodes both ways. What the nodes mean is decided in `server.rs`.

use std::sync::Arc;

use buffa::Message as _;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use wacore_binary::Node;
use wacore_binary::consts::WA_CONN_HEADER;
use waproto::whatsapp as wa;

use crate::error::{Error, Result};
use crate::noise::{Ciphers, Reply};
use crate::server::Shared;

/// What a connection task is asked to do from outside.
#[derive(Debug)]
pub enum Outbound {
    /// Encrypt and send one node.
    Node(Box<Node>),
    /// Close the WebSocket cleanly.
    Close,
    /// Drop the TCP connection without a close frame.
    Drop,
}

/// Reassembles frames from WebSocket messages.
#[derive(Default)]
struct Frames {
    buffer: Vec<u8>,
    header_seen: bool,
}

impl Frames {
    fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    fn next(&mut self) -> Result<Option<Vec<u8>>> {
        if !self.header_seen {
            if self.buffer.starts_with(b"ED\x00\x01") {
                if self.buffer.len() < 7 {
                    return Ok(None);
                }
                let len = frame_len(&self.buffer[4..7]);
                if self.buffer.len() < 7 + len {
                    return Ok(None);
                }
                self.buffer.drain(..7 + len);
            }
            if self.buffer.len() < WA_CONN_HEADER.len() {
                return Ok(None);
            }
            if self.buffer[..2] != WA_CONN_HEADER[..2] {
                return Err(Error::Protocol(
                    "the first message lacks the WA header".into(),
                ));
            }
            self.buffer.drain(..WA_CONN_HEADER.len());
            self.header_seen = true;
        }
        if self.buffer.len() < 3 {
            return Ok(None);
        }
        let len = frame_len(&self.buffer[..3]);
        if self.buffer.len() < 3 + len {
            return Ok(None);
        }
        let frame = self.buffer[3..3 + len].to_vec();
        self.buffer.drain(..3 + len);
        Ok(Some(frame))
    }
}

fn frame_len(bytes: &[u8]) -> usize {
    (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2])
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(3 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
    out.extend_from_slice(payload);
    out
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn next_frame(socket: &mut Socket, frames: &mut Frames) -> Result<Vec<u8>> {
    loop {
        if let Some(frame) = frames.next()? {
            return Ok(frame);
        }
        match socket.next().await {
            Some(Ok(Message::Binary(data))) => frames.feed(&data),
            Some(Ok(Message::Close(_))) | None => return Err(Error::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Serves one TCP connection until either side ends it.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let id = shared.next_connection_id();
    match run(&shared, id, stream).await {
        Ok(()) | Err(Error::Closed) => {}
        Err(e) => tracing::debug!(connection = id, error = %e, "mock connection ended"),
    }
    shared.connection_closed(id);
}

async fn run(shared: &Arc<Shared>, id: u64, stream: TcpStream) -> Result<()> {
    let mut socket = tokio_tungstenite::accept_async(stream).await?;
    let mut frames = Frames::default();
    let hello = next_frame(&mut socket, &mut frames).await?;
    let (ciphers, client) = match shared.identity().respond(&hello)? {
        Reply::Done {
            server_hello,
            ciphers,
            hello,
        } => {
            socket
                .send(Message::Binary(framed(&server_hello).into()))
                .await?;
            (ciphers, hello)
        }
        Reply::Continue {
            server_hello,
            pending,
        } => {
            socket
                .send(Message::Binary(framed(&server_hello).into()))
                .await?;
            let finish = next_frame(&mut socket, &mut frames).await?;
            pending.finish(&finish)?
        }
    };
    let payload = wa::ClientPayload::decode_from_slice(&client.payload)
        .map_err(|e| Error::Protocol(format!("client payload: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    shared.connection_opened(id, client.client_static, &payload, tx);

    let Ciphers { read, write } = ciphers;
    let mut read_counter = 0u32;
    let mut write_counter = 0u32;
    loop {
        tokio::select! {
            frame = next_frame(&mut socket, &mut frames) => {
                let mut frame = frame?;
                read
                    .decrypt_in_place_with_counter(read_counter, &mut frame)
                    .map_err(|e| Error::Protocol(format!("decrypt: {e}")))?;
                read_counter += 1;
                let data = wacore_binary::util::unpack(&frame)
                    .map_err(|e| Error::Protocol(format!("unpack: {e}")))?;
                let node = wacore_binary::marshal::unmarshal_ref(&data)
                    .map_err(|e| Error::Protocol(format!("unmarshal: {e}")))?
                    .to_owned();
                shared.handle(id, node);
            }
            out = rx.recv() => match out {
                Some(Outbound::Node(node)) => {
                    let plain = wacore_binary::marshal::marshal(&node)
                        .map_err(|e| Error::Protocol(format!("marshal: {e}")))?;
                    let sealed = write
                        .encrypt_with_counter(write_counter, &plain)
                        .map_err(|e| Error::Protocol(format!("encrypt: {e}")))?;
                    write_counter += 1;
                    socket.send(Message::Binary(framed(&sealed).into())).await?;
                }
                Some(Outbound::Close) | None => {
                    let _ = socket.close(None).await;
                    return Ok(());
                }
                Some(Outbound::Drop) => return Ok(()),
            },
        }
    }
}
