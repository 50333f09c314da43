package workflows

import (
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Custom search attributes connectors carry (Keyword), so the Temporal UI
// and `temporal workflow list --query "ConnectorKind='kafka'"` can filter
// them. Register them once per namespace (`make dev` and the test stack do;
// see SearchAttributeTypes).
const (
	SearchAttrConnectorName   = "ConnectorName"
	SearchAttrConnectorKind   = "ConnectorKind"
	SearchAttrConnectorSource = "ConnectorSource"
	// SearchAttrConnectorState is active or paused; the connector keeps it
	// current (when it was started with it).
	SearchAttrConnectorState = "ConnectorState"
)

// Values of SearchAttrConnectorState.
const (
	ConnectorStateActive = "active"
	ConnectorStatePaused = "paused"
)

var connectorStateKey = temporal.NewSearchAttributeKeyKeyword(SearchAttrConnectorState)

// SearchAttributeTypes are the custom search attributes to register, by
// name, with their Temporal type.
func SearchAttributeTypes() map[string]string {
	return map[string]string{
		SearchAttrConnectorName:   "Keyword",
		SearchAttrConnectorKind:   "Keyword",
		SearchAttrConnectorSource: "Keyword",
		SearchAttrConnectorState:  "Keyword",
	}
}

// ConnectorSearchAttributes are a new connector workflow's search
// attributes: its name, kind (cron, kafka, sqs, sns, kinesis), source
// (bucket and prefix, topic, queue or stream) and state (active), leaving
// out those registered does not hold (a namespace lacking one refuses the
// start).
func ConnectorSearchAttributes(name, kind, source string, registered func(string) bool) temporal.SearchAttributes {
	var updates []temporal.SearchAttributeUpdate
	for _, a := range []struct{ name, value string }{
		{SearchAttrConnectorName, name}, {SearchAttrConnectorKind, kind},
		{SearchAttrConnectorSource, source}, {SearchAttrConnectorState, ConnectorStateActive},
	} {
		if registered(a.name) {
			updates = append(updates, temporal.NewSearchAttributeKeyKeyword(a.name).ValueSet(a.value))
		}
	}
	return temporal.NewSearchAttributes(updates...)
}

// syncConnectorState sets the ConnectorState search attribute to match
// paused, when the connector was started with the attribute (only then is
// it registered: an unknown attribute would fail the workflow task) and it
// differs. Histories from before the attribute replay without a command.
func syncConnectorState(ctx workflow.Context, paused bool) {
	current, ok := workflow.GetTypedSearchAttributes(ctx).GetKeyword(connectorStateKey)
	if !ok {
		return
	}
	want := ConnectorStateActive
	if paused {
		want = ConnectorStatePaused
	}
	if current == want {
		return
	}
	if workflow.GetVersion(ctx, changeConnectorStateAttribute, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, connectorStateKey.ValueSet(want)); err != nil {
		workflow.GetLogger(ctx).Warn("Could not update the ConnectorState search attribute", "Error", err)
	}
}

// changeConnectorStateAttribute: connectors upsert their ConnectorState
// search attribute.
const changeConnectorStateAttribute = "connector-state-search-attribute"
