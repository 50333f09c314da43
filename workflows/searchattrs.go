package workflows

import "go.temporal.io/sdk/temporal"

// Custom search attributes connectors carry (Keyword), so the Temporal UI
// and `temporal workflow list --query "ConnectorKind='kafka'"` can filter
// them. Register them once per namespace (`make dev` and the test stack do;
// see SearchAttributeTypes).
const (
	SearchAttrConnectorName   = "ConnectorName"
	SearchAttrConnectorKind   = "ConnectorKind"
	SearchAttrConnectorSource = "ConnectorSource"
)

// SearchAttributeTypes are the custom search attributes to register, by
// name, with their Temporal type.
func SearchAttributeTypes() map[string]string {
	return map[string]string{
		SearchAttrConnectorName:   "Keyword",
		SearchAttrConnectorKind:   "Keyword",
		SearchAttrConnectorSource: "Keyword",
	}
}

// ConnectorSearchAttributes are a connector workflow's search attributes:
// its name, kind (cron, kafka, sqs, sns, kinesis) and source (bucket and
// prefix, topic, queue or stream).
func ConnectorSearchAttributes(name, kind, source string) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		temporal.NewSearchAttributeKeyKeyword(SearchAttrConnectorName).ValueSet(name),
		temporal.NewSearchAttributeKeyKeyword(SearchAttrConnectorKind).ValueSet(kind),
		temporal.NewSearchAttributeKeyKeyword(SearchAttrConnectorSource).ValueSet(source),
	)
}
