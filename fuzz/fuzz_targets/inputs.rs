//! Inputs as a caller submits them, through the real runtime and its store. A spec or payload the runtime refuses
//! gets the typed error that names why (the spec's own validation, or the payload bound) and admits nothing. An
//! input it admits reaches the executor with its payload byte for byte: a durable one after a restart, from what the
//! store kept, an ephemeral one in the same process.

#![no_main]

use std::sync::{Arc, Mutex};

use burrow::{
    BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, MemoryStore, PAYLOAD_BYTES_MAX, RunRequest, Runtime,
    RuntimeError,
};
use burrow_core::ids::{InputId, SessionId};
use burrow_core::input::{AbandonReason, Durability, InputKind, InputState};
use burrow_env::runtime::block_on_current_thread;
use burrow_env::sync::Notify;
use burrow_env::time::{Duration, timeout};
use libfuzzer_sys::fuzz_target;

const SESSION: SessionId = SessionId(1);

/// Records every input it is handed and completes the run.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(InputId, String)>>,
    handed: Notify,
}

impl Executor for Recorder {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        self.seen.lock().unwrap().extend(request.inputs.into_iter().map(|input| (input.id, input.payload)));
        self.handed.notify_one();
        Box::pin(async { Ok(ExecutorOutput::result("done")) })
    }
}

/// The input the bytes describe: a kind and flags, then the idempotency key, the supersession key, the intent and
/// the payload, separated by 0xff. A flag stretches the payload past the runtime's bound.
fn decode(data: &[u8]) -> Option<Input> {
    let (&[kind, flags], rest) = data.split_first_chunk::<2>()?;
    let mut fields = rest.split(|b| *b == 0xff).map(|f| String::from_utf8_lossy(f).into_owned());
    let (key, supersession, intent) = (fields.next(), fields.next(), fields.next().unwrap_or_default());
    let mut payload = fields.collect::<Vec<_>>().join("\u{ff}");
    let kind = match kind % 8 {
        0 => InputKind::Prompt,
        1 => InputKind::ExternalEvent,
        2 => InputKind::FlowStep,
        3 => InputKind::PeerMessage,
        4 => InputKind::PeerRequest { intent },
        // The intent field doubles as the request id a peer response answers (empty or oversized: refused).
        5 if flags & 0x01 == 0 => InputKind::PeerResponseProgress { request: intent },
        5 => InputKind::PeerResponseTerminal { request: intent },
        6 => InputKind::Continuation,
        _ => InputKind::Operation,
    };
    if flags & 0x80 != 0 && flags & 0x40 != 0 {
        let pad = PAYLOAD_BYTES_MAX + 1 - payload.len().min(PAYLOAD_BYTES_MAX);
        payload.push_str(&"x".repeat(pad));
    }
    let mut input = Input::new(kind, payload);
    if flags & 1 != 0 {
        input.spec.durability = Durability::Ephemeral;
    } else if flags & 0x20 != 0 {
        // Derived: refused for a kind someone authored, written like a durable input otherwise.
        input.spec.durability = Durability::Derived;
    }
    if flags & 2 != 0 {
        input.spec.idempotency_key = key;
    }
    if flags & 4 != 0 {
        input.spec.supersession_key = supersession;
    }
    input.spec.steer = flags & 8 != 0;
    Some(input)
}

/// Waits, bounded, until `recorder` saw `input`; returns the payload it was handed.
async fn handed(recorder: &Recorder, input: InputId) -> String {
    loop {
        if let Some((_, payload)) = recorder.seen.lock().unwrap().iter().find(|(id, _)| *id == input) {
            return payload.clone();
        }
        // A run hands out at most a batch: a few runs at most, each announced.
        let announced = timeout(Duration::from_secs(5), recorder.handed.notified()).await;
        assert!(announced.is_ok(), "input {input:?} was admitted and never handed to the executor");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = decode(data) else { return };
    block_on_current_thread(async move {
        let store = MemoryStore::new();
        let first = Runtime::with_store(Arc::new(store.clone()));
        first.prepare(SESSION).await.expect("a fresh session prepares");
        let answer = first.accept_input(SESSION, input.clone()).await;
        let active = first.list_active_inputs(SESSION).await.expect("the session is there");
        let admitted = match answer {
            Err(error) => {
                if input.payload.len() > PAYLOAD_BYTES_MAX {
                    let len = input.payload.len();
                    assert!(
                        matches!(error, RuntimeError::PayloadTooLarge { len: l, max } if l == len && max == PAYLOAD_BYTES_MAX),
                        "a payload of {len} bytes answered {error:?}"
                    );
                } else if let Err(validation) = input.spec.validate() {
                    assert!(
                        matches!(&error, RuntimeError::Rejected(v) if *v == validation),
                        "the spec's own reason, not {error:?}"
                    );
                }
                assert!(active.is_empty(), "a refused input admitted something: {active:?}");
                return;
            }
            Ok(outcome) => {
                assert!(input.payload.len() <= PAYLOAD_BYTES_MAX, "a payload above the bound was admitted");
                assert_eq!(input.spec.validate(), Ok(()), "an input its own validation refuses was admitted");
                outcome.input()
            }
        };
        // Only what is still pending runs (an operation record is consumed on accept).
        if !active.iter().any(|view| view.id == admitted) {
            return;
        }
        let recorder = Arc::new(Recorder::default());
        if input.spec.durability == Durability::Derived {
            // A restart ends it rather than replay it (specs/input.md#derived); in this process it runs.
            drop(first);
            let second = Runtime::with_store(Arc::new(store));
            second.prepare(SESSION).await.expect("the stored session prepares again");
            let view = second.input_state(SESSION, admitted).await.expect("state").expect("its row is kept");
            assert_eq!(view.state, InputState::Abandoned(AbandonReason::Rederived), "a derived input is not replayed");
            return;
        }
        let runtime = if input.spec.durability == Durability::Durable {
            drop(first);
            let second = Runtime::with_store(Arc::new(store));
            second.prepare(SESSION).await.expect("the stored session prepares again");
            second
        } else {
            first
        };
        runtime.attach_executor(SESSION, recorder.clone()).await.expect("an executor attaches");
        // A kind that waits for a wake (a quiet peer request) is woken by the next input; this one asks for nothing.
        let _ = runtime.accept_input(SESSION, Input::prompt("")).await;
        assert_eq!(handed(&recorder, admitted).await, input.payload, "the payload changed on its way");
    });
});
