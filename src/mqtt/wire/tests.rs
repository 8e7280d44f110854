//! The connection against a broker of a few lines on a loopback socket: what it sends, when,
//! and in how many pieces, is the test's.

use std::time::Duration;

use rumqttc::{MqttOptions, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Wire, connect};

/// A deadline for what must happen (far beyond [`super::ACK_PATIENCE`]).
const DEADLINE: Duration = Duration::from_secs(10);

/// Connects a [`Wire`] to a listener that answers CONNECT with a successful ConnAck; returns
/// both ends.
async fn connected() -> (Wire, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = async {
        let (mut socket, _) = listener.accept().await.unwrap();
        // CONNECT: a fixed header of two bytes (it is short) and the rest.
        let mut header = [0u8; 2];
        socket.read_exact(&mut header).await.unwrap();
        assert_eq!(header[0], 0x10, "CONNECT first");
        let mut rest = vec![0u8; usize::from(header[1])];
        socket.read_exact(&mut rest).await.unwrap();
        socket.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        socket
    };
    let (wire, socket) = tokio::join!(
        connect(MqttOptions::new("wire-test", "127.0.0.1", port)),
        broker
    );
    (wire.expect("connected"), socket)
}

fn puback(pkid: u16) -> [u8; 4] {
    let [hi, lo] = pkid.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

#[tokio::test]
async fn a_command_that_comes_while_acks_are_owed_and_never_come_is_read_after_the_patience() {
    let (mut wire, mut broker) = connected().await;
    // A hundred acks owed: the socket waits for 400 bytes.
    wire.expect_acks(100);
    // A QoS 0 publish of "go" on "c", and nothing else.
    broker
        .write_all(&[0x30, 0x05, 0x00, 0x01, b'c', b'g', b'o'])
        .await
        .unwrap();
    let packet = tokio::time::timeout(DEADLINE, wire.read())
        .await
        .expect("read within the deadline")
        .expect("a packet");
    match packet {
        Packet::Publish(p) => {
            assert_eq!(p.topic, "c");
            assert_eq!(p.payload.as_ref(), b"go");
        }
        other => panic!("expected the publish, got {other:?}"),
    }
}

#[tokio::test]
async fn acks_that_come_in_pieces_are_all_read_in_order() {
    let (mut wire, mut broker) = connected().await;
    let owed: Vec<u16> = (1..=300).collect();
    let bytes: Vec<u8> = owed.iter().flat_map(|&pkid| puback(pkid)).collect();
    let sender = tokio::spawn(async move {
        // Pieces that cut acks in two, each written after a pause of its own.
        for piece in bytes.chunks(7) {
            broker.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        broker
    });
    let mut read = Vec::new();
    while read.len() < owed.len() {
        // As the session does: before each read, the acks still owed.
        wire.expect_acks(owed.len() - read.len());
        match tokio::time::timeout(DEADLINE, wire.read()).await {
            Ok(Ok(Packet::PubAck(ack))) => read.push(ack.pkid),
            other => panic!("after {} acks: {other:?}", read.len()),
        }
    }
    assert_eq!(read, owed);
    // Nothing owed any more: a PingResp is read as it comes.
    let mut broker = sender.await.unwrap();
    wire.expect_acks(0);
    broker.write_all(&[0xd0, 0x00]).await.unwrap();
    let packet = tokio::time::timeout(DEADLINE, wire.read()).await;
    assert!(matches!(packet, Ok(Ok(Packet::PingResp))), "{packet:?}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_socket_waits_for_the_bytes_of_the_acks_owed_less_those_buffered_until_patience_runs_out()
 {
    let (mut wire, _broker) = connected().await;
    assert_eq!(wire.low_water.told, 1, "the kernel's default at first");
    wire.expect_acks(100);
    assert!(
        wire.low_water.apply(0).is_some(),
        "a read waits, with a deadline"
    );
    assert_eq!(wire.low_water.told, 400);
    // Six bytes of the acks are in the buffer already: the socket waits for the rest.
    wire.low_water.apply(6);
    assert_eq!(wire.low_water.told, 394);
    wire.low_water.lose_patience();
    assert_eq!(wire.low_water.apply(0), None, "no deadline once impatient");
    assert_eq!(wire.low_water.told, 1);
    wire.low_water.heard();
    wire.expect_acks(0);
    assert_eq!(wire.low_water.apply(0), None);
    assert_eq!(wire.low_water.told, 1);
}
