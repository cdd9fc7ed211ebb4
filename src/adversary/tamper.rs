//! `tamper`: alters client requests it relays. As leader it rewrites the requests inside
//! every AppendEntries it sends (and re-signs the AppendEntries with its own key, so the
//! outer signature is good and it alone is to blame); as follower it rewrites the requests
//! it forwards. Each message gets one kind of tampering, rotating: a changed op, a changed
//! seq, a flipped signature byte, another client's id. Its own log stays honest, so in
//! `raft` (no signatures) its followers commit requests no client issued.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Input, Message, Node, Op, Output, Payload, SignedRequest};
use ed25519_dalek::Signature;

pub struct Tamper {
    inner: Node,
    kit: Kit,
    /// Counts tamperings, to rotate the kind.
    count: u64,
}

impl Tamper {
    pub fn new(ctx: &Context) -> Tamper {
        Tamper {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 16),
            count: 0,
        }
    }

    /// One request, altered in the way `kind` says. Always changes something.
    fn alter(&self, r: &mut SignedRequest, kind: u64) {
        match kind % 4 {
            1 => r.body.seq = r.body.seq.wrapping_add(1000),
            2 if r.sig.is_some() => {
                let mut b = r.sig.expect("checked").to_bytes();
                b[0] ^= 1;
                r.sig = Some(Signature::from_bytes(&b));
            }
            3 => {
                let clients = self.kit.clients();
                let other = clients.iter().copied().find(|&c| c != r.body.client);
                r.body.client = other.unwrap_or(r.body.client.wrapping_add(1));
            }
            // 0, and 2 in `raft` where there is no signature to flip: change the operation.
            _ => {
                r.body.op = match &r.body.op {
                    Op::Put { key, value } => Op::Put {
                        key: key.clone(),
                        value: [value.as_slice(), b"~"].concat(),
                    },
                    Op::Get { key } | Op::Delete { key } => Op::Put {
                        key: key.clone(),
                        value: "tampered".into(),
                    },
                    Op::Cas { key, expected, new } => Op::Cas {
                        key: key.clone(),
                        expected: expected.clone(),
                        new: [new.as_slice(), b"~"].concat(),
                    },
                }
            }
        }
    }

    fn rewrite(&mut self, msg: Message) -> Message {
        match msg {
            Message::AppendEntries(ae)
                if ae.body.leader == self.kit.id
                    && ae
                        .body
                        .entries
                        .iter()
                        .any(|e| e.payload.request().is_some()) =>
            {
                let mut body = ae.body;
                self.count += 1;
                for e in &mut body.entries {
                    if let Payload::Request(r) = &mut e.payload {
                        self.alter(r, self.count);
                    }
                }
                Message::AppendEntries(self.kit.sign(body))
            }
            Message::Request(mut r) => {
                self.count += 1;
                self.alter(&mut r, self.count);
                Message::Request(r)
            }
            other => other,
        }
    }
}

impl Actor for Tamper {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let out = self.inner.step(input);
        out.into_iter()
            .map(|o| match o {
                Output::Send { to, msg } => Output::Send {
                    to,
                    msg: self.rewrite(msg),
                },
                Output::Broadcast(msg) => Output::Broadcast(self.rewrite(msg)),
                other => other,
            })
            .collect()
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adversary::testkit;
    use crate::crypto::Signed;
    use crate::protocol::{Request, Variant};

    #[test]
    fn every_kind_of_tampering_breaks_the_client_signature() {
        let ctx = testkit::ctx(1, 4, Variant::Bft);
        let t = Tamper::new(&ctx);
        let body = Request {
            client: 0,
            seq: 5,
            op: Op::Put {
                key: "k".into(),
                value: "v".into(),
            },
        };
        let good = ctx.domain().sign(&testkit::client_key(), body);
        assert!(ctx.ring.verify(&good));
        for kind in 0..4 {
            let mut r = good.clone();
            t.alter(&mut r, kind);
            assert_ne!(r, good, "kind {kind} changed nothing");
            assert!(!ctx.ring.verify(&r), "kind {kind} kept a valid signature");
        }
    }

    #[test]
    fn forwarded_requests_are_altered() {
        let mut t = Tamper::new(&testkit::ctx(1, 4, Variant::Raft));
        let r = Signed {
            body: Request {
                client: 0,
                seq: 1,
                op: Op::Get { key: "k".into() },
            },
            sig: None,
        };
        let out = t.rewrite(Message::Request(r.clone()));
        assert!(matches!(out, Message::Request(x) if x != r));
    }
}
