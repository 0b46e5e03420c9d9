"""The PyFlink job: Kafka -> Paimon raw/rejected tables + windowed aggregates to Kafka."""
