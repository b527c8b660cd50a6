//! The update agent's messages (Kanto update-manager's types; pure serde). Empty fields are
//! left out as Go's `omitempty` does.

use serde::{Deserialize, Serialize};

/// `{activityId, timestamp (ms), payload}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(rename = "activityId", default)]
    pub activity_id: String,
    #[serde(default)]
    pub timestamp: i64,
    pub payload: T,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<Baseline>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preconditions: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentWithConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentWithConfig {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredStateCommand {
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub baseline: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub baseline: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    #[serde(default)]
    pub component: Component,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub progress: u8,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(
        rename = "hardwareNodes",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hardware_nodes: Vec<serde_json::Value>,
    #[serde(
        rename = "softwareNodes",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub software_nodes: Vec<SoftwareNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associations: Vec<Association>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftwareNode {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<KeyValue>,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub node_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    #[serde(rename = "sourceId")]
    pub source_id: String,
    #[serde(rename = "targetId")]
    pub target_id: String,
}

/// Desired-state feedback statuses.
pub mod status {
    pub const IDENTIFYING: &str = "IDENTIFYING";
    pub const IDENTIFIED: &str = "IDENTIFIED";
    pub const IDENTIFICATION_FAILED: &str = "IDENTIFICATION_FAILED";
    pub const COMPLETED: &str = "COMPLETED";
    pub const INCOMPLETE: &str = "INCOMPLETE";
    pub const SUPERSEDED: &str = "SUPERSEDED";
    pub const DOWNLOADING: &str = "DOWNLOADING";
    pub const DOWNLOAD_SUCCESS: &str = "DOWNLOAD_SUCCESS";
    pub const DOWNLOAD_FAILURE: &str = "DOWNLOAD_FAILURE";
    pub const UPDATING: &str = "UPDATING";
    pub const UPDATE_SUCCESS: &str = "UPDATE_SUCCESS";
    pub const UPDATE_FAILURE: &str = "UPDATE_FAILURE";
    pub const ACTIVATING: &str = "ACTIVATING";
    pub const ACTIVATION_SUCCESS: &str = "ACTIVATION_SUCCESS";
    pub const ACTIVATION_FAILURE: &str = "ACTIVATION_FAILURE";
    pub const ROLLBACK: &str = "ROLLBACK";
    pub const ROLLBACK_SUCCESS: &str = "ROLLBACK_SUCCESS";
    pub const ROLLBACK_FAILURE: &str = "ROLLBACK_FAILURE";
    pub const CLEANUP: &str = "CLEANUP";
    pub const CLEANUP_SUCCESS: &str = "CLEANUP_SUCCESS";
    pub const CLEANUP_FAILURE: &str = "CLEANUP_FAILURE";
}

/// Per-action statuses.
pub mod action_status {
    pub const IDENTIFIED: &str = "IDENTIFIED";
    pub const DOWNLOADING: &str = "DOWNLOADING";
    pub const DOWNLOAD_SUCCESS: &str = "DOWNLOAD_SUCCESS";
    pub const DOWNLOAD_FAILURE: &str = "DOWNLOAD_FAILURE";
    pub const UPDATING: &str = "UPDATING";
    pub const UPDATE_SUCCESS: &str = "UPDATE_SUCCESS";
    pub const UPDATE_FAILURE: &str = "UPDATE_FAILURE";
    pub const ACTIVATING: &str = "ACTIVATING";
    pub const ACTIVATION_SUCCESS: &str = "ACTIVATION_SUCCESS";
    pub const ACTIVATION_FAILURE: &str = "ACTIVATION_FAILURE";
    pub const REMOVING: &str = "REMOVING";
    pub const REMOVAL_SUCCESS: &str = "REMOVAL_SUCCESS";
    pub const REMOVAL_FAILURE: &str = "REMOVAL_FAILURE";
}

/// An action's status, typed: what code deciding from feedback (deployment) reads, instead
/// of matching the wire string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    Identified,
    Downloading,
    DownloadSuccess,
    DownloadFailure,
    Updating,
    UpdateSuccess,
    UpdateFailure,
    Activating,
    ActivationSuccess,
    ActivationFailure,
    Removing,
    RemovalSuccess,
    RemovalFailure,
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Identified, or a step under way.
    Pending,
    /// The last step done succeeded.
    Succeeded,
    /// A step failed (after a rollback the action stays failed).
    Failed,
}

impl ActionStatus {
    pub const ALL: [ActionStatus; 13] = [
        ActionStatus::Identified,
        ActionStatus::Downloading,
        ActionStatus::DownloadSuccess,
        ActionStatus::DownloadFailure,
        ActionStatus::Updating,
        ActionStatus::UpdateSuccess,
        ActionStatus::UpdateFailure,
        ActionStatus::Activating,
        ActionStatus::ActivationSuccess,
        ActionStatus::ActivationFailure,
        ActionStatus::Removing,
        ActionStatus::RemovalSuccess,
        ActionStatus::RemovalFailure,
    ];

    /// The wire name (one of [`action_status`]).
    pub fn as_str(self) -> &'static str {
        use action_status as a;
        match self {
            ActionStatus::Identified => a::IDENTIFIED,
            ActionStatus::Downloading => a::DOWNLOADING,
            ActionStatus::DownloadSuccess => a::DOWNLOAD_SUCCESS,
            ActionStatus::DownloadFailure => a::DOWNLOAD_FAILURE,
            ActionStatus::Updating => a::UPDATING,
            ActionStatus::UpdateSuccess => a::UPDATE_SUCCESS,
            ActionStatus::UpdateFailure => a::UPDATE_FAILURE,
            ActionStatus::Activating => a::ACTIVATING,
            ActionStatus::ActivationSuccess => a::ACTIVATION_SUCCESS,
            ActionStatus::ActivationFailure => a::ACTIVATION_FAILURE,
            ActionStatus::Removing => a::REMOVING,
            ActionStatus::RemovalSuccess => a::REMOVAL_SUCCESS,
            ActionStatus::RemovalFailure => a::REMOVAL_FAILURE,
        }
    }

    /// The status a wire name stands for; None for a name Kanto does not have.
    pub fn parse(name: &str) -> Option<ActionStatus> {
        ActionStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn outcome(self) -> ActionOutcome {
        match self {
            ActionStatus::Identified
            | ActionStatus::Downloading
            | ActionStatus::Updating
            | ActionStatus::Activating
            | ActionStatus::Removing => ActionOutcome::Pending,
            ActionStatus::DownloadSuccess
            | ActionStatus::UpdateSuccess
            | ActionStatus::ActivationSuccess
            | ActionStatus::RemovalSuccess => ActionOutcome::Succeeded,
            ActionStatus::DownloadFailure
            | ActionStatus::UpdateFailure
            | ActionStatus::ActivationFailure
            | ActionStatus::RemovalFailure => ActionOutcome::Failed,
        }
    }
}

impl Action {
    /// The action's typed status; None when its status is not one of Kanto's.
    pub fn typed_status(&self) -> Option<ActionStatus> {
        ActionStatus::parse(&self.status)
    }
}

/// Topics of a domain: Kanto's `domainAsTopic` (dashes dropped, `update` appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub desired_state: String,
    pub desired_state_command: String,
    pub current_state_get: String,
    pub current_state: String,
    pub feedback: String,
}

impl Topics {
    pub fn for_domain(domain: &str) -> Topics {
        let mut prefix = domain.replace('-', "");
        if !prefix.ends_with("update") {
            prefix.push_str("update");
        }
        Topics {
            desired_state: format!("{prefix}/desiredstate"),
            desired_state_command: format!("{prefix}/desiredstate/command"),
            current_state_get: format!("{prefix}/currentstate/get"),
            current_state: format!("{prefix}/currentstate"),
            feedback: format!("{prefix}/desiredstatefeedback"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_fixtures() {
        let t = Topics::for_domain("containers");
        assert_eq!(t.desired_state, "containersupdate/desiredstate");
        assert_eq!(
            t.desired_state_command,
            "containersupdate/desiredstate/command"
        );
        assert_eq!(t.current_state_get, "containersupdate/currentstate/get");
        assert_eq!(t.current_state, "containersupdate/currentstate");
        assert_eq!(t.feedback, "containersupdate/desiredstatefeedback");
        assert_eq!(
            Topics::for_domain("self-update").desired_state,
            "selfupdate/desiredstate"
        );

        let ds: Envelope<DesiredState> = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/leda-desired-state.json"
        ))
        .unwrap();
        assert_eq!(ds.activity_id, "activity-id-leda-containers");
        assert_eq!(ds.payload.domains[0].components.len(), 5);
        let cs: Envelope<Inventory> = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/currentstate-leda.json"
        ))
        .unwrap();
        assert_eq!(cs.payload.software_nodes[0].id, "containers-update-agent");
        assert_eq!(cs.payload.software_nodes[0].node_type, "APPLICATION");
        // Serialising again keeps Kanto's shape (omitempty fields stay out).
        let fb = Feedback {
            status: status::IDENTIFYING.into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&fb).unwrap(),
            r#"{"status":"IDENTIFYING"}"#
        );
    }

    #[test]
    fn action_statuses_are_typed_both_ways() {
        use action_status as a;
        let cases = [
            (a::IDENTIFIED, ActionOutcome::Pending),
            (a::DOWNLOADING, ActionOutcome::Pending),
            (a::DOWNLOAD_SUCCESS, ActionOutcome::Succeeded),
            (a::DOWNLOAD_FAILURE, ActionOutcome::Failed),
            (a::UPDATING, ActionOutcome::Pending),
            (a::UPDATE_SUCCESS, ActionOutcome::Succeeded),
            (a::UPDATE_FAILURE, ActionOutcome::Failed),
            (a::ACTIVATING, ActionOutcome::Pending),
            (a::ACTIVATION_SUCCESS, ActionOutcome::Succeeded),
            (a::ACTIVATION_FAILURE, ActionOutcome::Failed),
            (a::REMOVING, ActionOutcome::Pending),
            (a::REMOVAL_SUCCESS, ActionOutcome::Succeeded),
            (a::REMOVAL_FAILURE, ActionOutcome::Failed),
        ];
        assert_eq!(cases.len(), ActionStatus::ALL.len());
        for (name, outcome) in cases {
            let s = ActionStatus::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(s.as_str(), name);
            assert_eq!(s.outcome(), outcome, "{name}");
        }
        // Exact names only: no suffix or case matching.
        for other in [
            "",
            "FAILURE",
            "SOME_FAILURE",
            "update_failure",
            "UPDATE_FAILURE ",
            "COMPLETED",
        ] {
            assert_eq!(ActionStatus::parse(other), None, "{other:?}");
        }
        let action = Action {
            status: a::ACTIVATION_FAILURE.into(),
            ..Default::default()
        };
        assert_eq!(action.typed_status(), Some(ActionStatus::ActivationFailure));
    }
}
