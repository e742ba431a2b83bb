// SPDX-License-Identifier: MPL-2.0
//! CMAF ingest (docs/protocol.md §6) with real pipelines against the receiver.

mod common;

use std::time::Duration;

use common::{audio_source, run_pipeline, video_source};
use fmp4ingest_receiver::Receiver;

#[test]
fn smoke() {
    let rx = Receiver::start().unwrap();
    let pp = rx.publishing_point("live");
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink protocol=cmaf location=\"{pp}\" \
         {} ! queue ! mux. {} ! queue ! mux.",
        video_source(8, 60),
        audio_source(8)
    );
    let r = run_pipeline(&d, Duration::from_secs(60));
    eprintln!("{r:?}");
    for t in rx.cmaf_tracks() {
        eprintln!(
            "{} seqs {:?} violations {:?} ended {} gaps {:?}",
            t.name,
            t.sequences(),
            t.violations,
            t.ended(),
            t.gaps()
        );
    }
    for q in rx.cmaf_requests() {
        eprintln!(
            "{} {} {} {:?} chunked {} len {:?} bytes {} status {:?}",
            q.connection, q.method, q.track, q.kind, q.chunked, q.content_length, q.bytes, q.status
        );
    }
    assert!(r.eos);
}
