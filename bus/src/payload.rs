//! [`IntoPayload`]: what a message's payload can be made from, without a copy for owned
//! buffers.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// Bytes a message can carry: what [`Bus::publish`](crate::Bus::publish),
/// [`Bus::request`](crate::Bus::request), [`Outgoing::payload`](crate::Outgoing::payload),
/// [`Message::new`](crate::Message::new) and the replies of a
/// [`Bus::serve`](crate::Bus::serve) handler accept.
///
/// Owned buffers are taken as they are: [`Bytes`], [`BytesMut`], `Vec<u8>`, `Box<[u8]>` and
/// `String` become the message's [`Bytes`] without a copy, and so does an `Arc<[u8]>` (the
/// `Bytes` keeps the `Arc` alive). Borrowed bytes (`&[u8]`, `b"..."`, `&str`, `&Vec<u8>`,
/// `&String`) and byte arrays by value are accepted too: they are copied only when the
/// message is kept in this process (a subscriber here, or a request or reply), and never
/// for a message that only goes to other processes, whose bytes are written straight into
/// the frame.
///
/// So all of these work, and the owned ones never copy the payload into the message:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use ephemeral_bus::Bus;
///
/// let bus = Bus::open("doc-payload").await?;
/// bus.publish("orders.created", b"42").await?;
/// bus.publish("orders.created", "42").await?;
/// bus.publish("orders.created", [4u8, 2]).await?;
/// bus.publish("orders.created", vec![4u8, 2]).await?;
/// bus.publish("orders.created", format!("{}", 42)).await?;
/// bus.publish("orders.created", Bytes::from_static(b"42")).await?;
/// let buffer = vec![4u8, 2, 0, 0];
/// bus.publish("orders.created", &buffer[..2]).await?;
/// # Ok(())
/// # }
/// ```
///
/// Implement it for a buffer type of your own when it can hand over its bytes as [`Bytes`]
/// (`Bytes::from_owner` does that for anything that is `AsRef<[u8]> + Send + 'static`).
pub trait IntoPayload {
    /// The bytes, borrowed: what is encoded for other processes.
    fn as_payload(&self) -> &[u8];

    /// The bytes as shared [`Bytes`], when the message is kept in this process: free for an
    /// owned buffer, one copy for borrowed bytes.
    fn into_payload(self) -> Bytes;
}

impl IntoPayload for Bytes {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        self
    }
}

impl IntoPayload for &Bytes {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        self.clone()
    }
}

impl IntoPayload for BytesMut {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        self.freeze()
    }
}

impl IntoPayload for Vec<u8> {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoPayload for Box<[u8]> {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoPayload for String {
    fn as_payload(&self) -> &[u8] {
        self.as_bytes()
    }

    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoPayload for Arc<[u8]> {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl IntoPayload for &Arc<[u8]> {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        Bytes::from_owner(Arc::clone(self))
    }
}

impl IntoPayload for &[u8] {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> IntoPayload for &[u8; N] {
    fn as_payload(&self) -> &[u8] {
        &self[..]
    }

    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> IntoPayload for [u8; N] {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(&self)
    }
}

impl IntoPayload for &Vec<u8> {
    fn as_payload(&self) -> &[u8] {
        self
    }

    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl IntoPayload for &str {
    fn as_payload(&self) -> &[u8] {
        self.as_bytes()
    }

    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl IntoPayload for &String {
    fn as_payload(&self) -> &[u8] {
        self.as_bytes()
    }

    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_buffers_are_not_copied() {
        let v = vec![1u8, 2, 3];
        let at = v.as_ptr();
        assert_eq!(v.into_payload().as_ptr(), at);

        let s = String::from("abc");
        let at = s.as_ptr();
        assert_eq!(s.into_payload().as_ptr(), at);

        let b = Bytes::from(vec![9u8; 16]);
        let at = b.as_ptr();
        assert_eq!((&b).into_payload().as_ptr(), at);
        assert_eq!(b.into_payload().as_ptr(), at);

        let a: Arc<[u8]> = Arc::from(&b"shared"[..]);
        let at = a.as_ptr();
        assert_eq!((&a).into_payload().as_ptr(), at);
        assert_eq!(a.into_payload(), &b"shared"[..]);

        let mut m = BytesMut::with_capacity(8);
        m.extend_from_slice(b"mut");
        let at = m.as_ptr();
        assert_eq!(m.into_payload().as_ptr(), at);
    }

    #[test]
    fn borrowed_bytes_read_the_same() {
        fn both<P: IntoPayload>(p: P) -> (Vec<u8>, Bytes) {
            (p.as_payload().to_vec(), p.into_payload())
        }
        let text = String::from("42");
        let digits: Vec<u8> = [4u8, 2].iter().map(|d| d + b'0').collect();
        for (seen, owned) in [
            both(b"42"),
            both([b'4', b'2']),
            both("42"),
            both::<&String>(&text),
            both(&b"42"[..]),
            both::<&Vec<u8>>(&digits),
        ] {
            assert_eq!(seen, b"42");
            assert_eq!(owned, &b"42"[..]);
        }
    }
}
