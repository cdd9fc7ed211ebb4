//! Message authentication, kept out of the state machine.
//!
//! `authenticate` checks every signature a message carries, the outer one and the embedded
//! ones (client requests in entries, votes in proofs, Acks in certificates), and that a
//! directly sent message comes from the principal its link authenticated. It is a pure
//! function, so a runtime may run it on any thread; the core then trusts signatures and
//! checks only meaning (distinct voters, terms, hashes).

use super::message::{Evidence, Message, PreparedCert};
use crate::crypto::{Keyring, Principal, SigCache, Signable, Signed};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("claims to be {claimed:?} but arrived from {link:?}")]
    WrongSender { claimed: Principal, link: Principal },
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// The sender's own signature is good but it vouches for content whose signatures are
    /// not: proof that the sender itself misbehaved (a leader tampering with requests).
    #[error("{0:?} signed a message carrying a forged signature inside ({1})")]
    SignedForgery(Principal, &'static str),
    #[error("unknown client {0}")]
    UnknownClient(u32),
}

/// Verification with an optional cache of signatures already found good.
struct Checker<'a> {
    ring: &'a Keyring,
    cache: Option<&'a mut SigCache>,
}

impl Checker<'_> {
    fn verify<T: Signable>(&mut self, m: &Signed<T>) -> bool {
        self.ring.verify_cached(m, self.cache.as_deref_mut())
    }
}

fn check_cert(ring: &mut Checker, cert: &PreparedCert) -> bool {
    cert.acks.iter().all(|a| ring.verify(a))
}

fn outer<T: Signable>(ring: &mut Checker, m: &Signed<T>) -> Result<(), AuthError> {
    if ring.verify(m) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(T::KIND))
    }
}

/// Checks every signature in `msg`, and that direct messages come from `link`.
pub fn authenticate(ring: &Keyring, link: Principal, msg: &Message) -> Result<(), AuthError> {
    check(&mut Checker { ring, cache: None }, link, msg)
}

/// As `authenticate`, skipping signatures `cache` has already seen verified.
pub fn authenticate_cached(
    ring: &Keyring,
    cache: &mut SigCache,
    link: Principal,
    msg: &Message,
) -> Result<(), AuthError> {
    check(
        &mut Checker {
            ring,
            cache: Some(cache),
        },
        link,
        msg,
    )
}

fn check(ring: &mut Checker, link: Principal, msg: &Message) -> Result<(), AuthError> {
    if let Some(claimed) = msg.direct_sender() {
        if claimed != link {
            return Err(AuthError::WrongSender { claimed, link });
        }
    }
    match msg {
        Message::RequestVote(m) => {
            outer(ring, m)?;
            if let Some(lock) = &m.body.lock {
                if !check_cert(ring, lock) {
                    return Err(AuthError::SignedForgery(m.signer(), "lock"));
                }
            }
        }
        Message::Vote(m) => outer(ring, m)?,
        Message::AppendEntries(m) => {
            outer(ring, m)?;
            let ae = &m.body;
            for e in &ae.entries {
                if let Some(r) = e.payload.request() {
                    if !ring.verify(r) {
                        return Err(AuthError::SignedForgery(m.signer(), "request"));
                    }
                }
            }
            if let Some(p) = &ae.proof {
                if !p.votes.iter().all(|v| ring.verify(v)) {
                    return Err(AuthError::SignedForgery(m.signer(), "proof"));
                }
            }
            if let Some(lock) = &ae.lock {
                if !check_cert(ring, lock) {
                    return Err(AuthError::SignedForgery(m.signer(), "lock"));
                }
            }
        }
        Message::Ack(m) => outer(ring, m)?,
        Message::Commit(m) => outer(ring, m)?,
        Message::Evidence(e) => {
            let ok = match e {
                Evidence::AppendEntries(a, b) => ring.verify(a) && ring.verify(b),
                Evidence::Votes(a, b) => ring.verify(a) && ring.verify(b),
                Evidence::Acks(a, b) => ring.verify(a) && ring.verify(b),
            };
            if !ok {
                return Err(AuthError::BadSignature("evidence"));
            }
        }
        Message::Request(r) => {
            if !ring.ring.has_client(r.body.client) {
                return Err(AuthError::UnknownClient(r.body.client));
            }
            outer(ring, r)?;
        }
        Message::Revolution(m) => {
            if !ring.ring.has_client(m.body.client) {
                return Err(AuthError::UnknownClient(m.body.client));
            }
            outer(ring, m)?;
            if !ring.verify(&m.body.request) || m.body.request.body.client != m.body.client {
                return Err(AuthError::BadSignature("revolution request"));
            }
        }
        // Replies are authenticated by the link alone (checked above).
        Message::Reply(_) => {}
        Message::CatchUp(c) => {
            for e in &c.entries {
                if let Some(r) = e.payload.request() {
                    if !ring.verify(r) {
                        return Err(AuthError::BadSignature("request in catch-up"));
                    }
                }
            }
        }
    }
    Ok(())
}
