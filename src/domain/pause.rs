//! Tenant pauses (0.9.0, scale-out): a tenant whose quota state is being moved to another
//! node, or has moved, is paused on this node (`quota.tenant_pauses`), and every quota
//! call acting for it is refused with QT503 (`error::QuotaError::Paused`).
//!
//! What a pause is, and the wait that makes a move's copy complete
//! (`quota.await_tenant_quiet`), is explained in docs/scale-out.md, "Pausing a tenant
//! (node side)". This module holds the pure parts: the states and the refusal's wording.

use serde_json::{json, Value};

use crate::domain::error::quoted;

/// Where a paused tenant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Its state is being copied to another node: retry shortly.
    Moving,
    /// Its state lives on another node now: go there.
    Moved,
}

impl State {
    /// The stored spelling (`tenant_pauses.state`, its CHECK constraint).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Moving => "moving",
            State::Moved => "moved",
        }
    }

    /// A stored value; None for anything the CHECK constraint would not let in.
    pub fn parse(text: &str) -> Option<State> {
        match text {
            "moving" => Some(State::Moving),
            "moved" => Some(State::Moved),
            _ => None,
        }
    }

    /// `quota.pause_tenant(..., moved)`.
    pub fn of_moved(moved: bool) -> State {
        if moved {
            State::Moved
        } else {
            State::Moving
        }
    }
}

/// One tenant's pause, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub tenant: String,
    pub state: State,
    /// The node the tenant is going to or went to (a name the router knows), if given.
    pub node: Option<String>,
}

impl Pause {
    pub fn message(&self) -> String {
        let tenant = quoted(&self.tenant);
        match (self.state, self.node.as_deref()) {
            (State::Moving, Some(n)) => format!("tenant \"{tenant}\" is paused: it is being moved to node \"{}\"", quoted(n)),
            (State::Moving, None) => format!("tenant \"{tenant}\" is paused: it is being moved to another node"),
            (State::Moved, Some(n)) => format!("tenant \"{tenant}\" has moved to node \"{}\"", quoted(n)),
            (State::Moved, None) => format!("tenant \"{tenant}\" has moved to another node"),
        }
    }

    /// `code` as every DETAIL has it, and `error` as the scale-out contract names it.
    pub fn detail(&self) -> Value {
        json!({
            "code": "tenant_paused",
            "error": "tenant_paused",
            "tenant": quoted(&self.tenant),
            "state": self.state.as_str(),
            "node": self.node.as_deref().map(quoted),
        })
    }

    pub fn hint(&self) -> String {
        let t = quoted(&self.tenant).replace('\'', "''");
        match self.state {
            State::Moving => format!(
                "Retry in a few seconds, through the router or on the node the router names (cluster.node_for('{t}')): nothing of this call was counted."
            ),
            State::Moved => format!(
                "Connect to the tenant's new node, which the router's cluster.node_for('{t}') names, and make the call there: this node no longer holds the tenant's quota state."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_nothing_else_parses() {
        for s in [State::Moving, State::Moved] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("paused"), None);
        assert_eq!(State::of_moved(true), State::Moved);
        assert_eq!(State::of_moved(false), State::Moving);
    }

    #[test]
    fn wording_names_the_tenant_and_the_node() {
        let p = Pause { tenant: "acme".into(), state: State::Moving, node: Some("n2".into()) };
        assert_eq!(p.message(), "tenant \"acme\" is paused: it is being moved to node \"n2\"");
        assert_eq!(p.detail(), json!({"code":"tenant_paused","error":"tenant_paused","tenant":"acme","state":"moving","node":"n2"}));
        assert!(p.hint().starts_with("Retry in a few seconds"), "{}", p.hint());
        let m = Pause { state: State::Moved, ..p };
        assert_eq!(m.message(), "tenant \"acme\" has moved to node \"n2\"");
        assert!(m.hint().contains("cluster.node_for('acme')"), "{}", m.hint());
        let unnamed = Pause { tenant: "o'b".into(), state: State::Moved, node: None };
        assert_eq!(unnamed.detail()["node"], Value::Null);
        assert!(unnamed.hint().contains("'o''b'"));
    }

    #[test]
    fn long_values_are_quoted_by_a_prefix() {
        let p = Pause { tenant: "t".repeat(10_000), state: State::Moving, node: Some("n".repeat(10_000)) };
        assert!(p.message().len() < 200 && p.detail().to_string().len() < 300 && p.hint().len() < 400);
    }
}
