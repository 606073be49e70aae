//! tracing (SPEC 3): runs carry session, run and input ids in their span; refusals and effects are events.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burrow::{Input, SessionId};
use support::{Scripted, attached, submit, within};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every span (name and fields) and every event (fields) as one line each.
#[derive(Clone, Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicU64>,
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = Line(format!("span {}", span.metadata().name()));
        span.record(&mut line);
        self.lines.lock().unwrap().push(line.0);
        Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line("event".to_owned());
        event.record(&mut line);
        self.lines.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[burrow_env::test]
async fn runs_have_spans_with_ids_and_refusals_and_effects_are_events() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let handle = submit(&rt, id, Input::prompt("ok:traced")).await;
    let input = handle.input();
    within(handle.wait()).await.unwrap();
    let _ = rt.interrupt(id, None).await.unwrap_err();
    let _ = rt.accept_input(SessionId(99), Input::prompt("x")).await;
    let lines = recorder.lines.lock().unwrap().clone();
    let run_span = lines.iter().find(|l| l.starts_with("span run")).expect("a run span");
    assert!(run_span.contains(&format!("session={id}")), "{run_span}");
    assert!(run_span.contains(&format!("inputs=[{}]", input.0)), "{run_span}");
    assert!(run_span.contains(&format!("run={}", exec.runs()[0].run)), "{run_span}");
    assert!(lines.iter().any(|l| l.starts_with("span session") && l.contains("event=\"Accept\"")), "session spans");
    assert!(
        lines.iter().any(|l| l.contains("refused") && l.contains("event=\"Interrupt\"")),
        "a refusal is an event: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("perform") && l.contains("StartRun")), "effects are events");
}
