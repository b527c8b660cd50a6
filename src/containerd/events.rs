//! containerd event envelopes → the manager's `RuntimeEvent`s.

use containerd_client::events::{TaskExit, TaskOom};
use containerd_client::types::Envelope;
use prost::Message;

use super::client::time;
use crate::runtime::RuntimeEvent;

pub fn decode(envelope: &Envelope) -> Option<RuntimeEvent> {
    let any = envelope.event.as_ref()?;
    match envelope.topic.as_str() {
        "/tasks/exit" => {
            let e = TaskExit::decode(any.value.as_slice()).ok()?;
            // Exits of exec'd processes (id != container id) are not the container's.
            (e.id.is_empty() || e.id == e.container_id).then(|| RuntimeEvent::TaskExit {
                id: e.container_id,
                pid: e.pid,
                exit_status: e.exit_status,
                exited_at: time(&e.exited_at),
            })
        }
        "/tasks/oom" => {
            let e = TaskOom::decode(any.value.as_slice()).ok()?;
            Some(RuntimeEvent::TaskOom { id: e.container_id })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(topic: &str, value: Vec<u8>) -> Envelope {
        Envelope {
            timestamp: None,
            namespace: "ns".into(),
            topic: topic.into(),
            event: Some(prost_types::Any {
                type_url: "containerd.events.TaskExit".into(),
                value,
            }),
        }
    }

    #[test]
    fn decodes_exits_and_ooms() {
        let exit = TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 42,
            exit_status: 3,
            exited_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
        };
        match decode(&envelope("/tasks/exit", exit.encode_to_vec())) {
            Some(RuntimeEvent::TaskExit {
                id,
                pid,
                exit_status,
                exited_at,
            }) => {
                assert_eq!((id.as_str(), pid, exit_status), ("c1", 42, 3));
                assert!(exited_at.is_some());
            }
            other => panic!("{other:?}"),
        }
        let exec_exit = TaskExit {
            id: "exec-1".into(),
            ..exit
        };
        assert_eq!(
            decode(&envelope("/tasks/exit", exec_exit.encode_to_vec())),
            None
        );
        let oom = TaskOom {
            container_id: "c2".into(),
        };
        assert_eq!(
            decode(&envelope("/tasks/oom", oom.encode_to_vec())),
            Some(RuntimeEvent::TaskOom { id: "c2".into() })
        );
        assert_eq!(decode(&envelope("/tasks/start", vec![])), None);
    }
}
