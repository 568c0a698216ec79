# Renders the strata-cluster module's config template for one sample broker, without
# any provider, so scripts/test-terraform.sh can hand the result to
# `strata serve --print-config` even where the moto apply cannot run. The moto apply
# checks the configs the module itself renders into the launch templates' user data.
# This sample is a broker-only node (no controller role) pointing at an S3-compatible
# endpoint, the shape the module's three-broker example does not produce. Its security
# settings are the module's defaults (SASL_SSL clients, mutual TLS inside).

terraform {
  required_version = ">= 1.5"
}

output "strata_toml" {
  value = templatefile("${path.module}/../../../terraform/modules/strata-cluster/templates/strata.toml.tftpl", {
    node_id                        = 4
    process_roles                  = ["broker"]
    listeners                      = "SASL_SSL://0.0.0.0:9092,INTERNAL://0.0.0.0:9094"
    advertised_listeners           = "SASL_SSL://10.0.1.11:9092,INTERNAL://10.0.1.11:9094"
    listener_security_protocol_map = "SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    inter_broker_listener_name     = "INTERNAL"
    controller_listener_names      = "CONTROLLER"
    mtls_listeners                 = ["internal"]
    ssl_certificate_location       = "/etc/strata/tls/broker.pem"
    ssl_key_location               = "/etc/strata/tls/broker.key"
    ssl_truststore_location        = "/etc/strata/tls/ca.pem"
    sasl_enabled_mechanisms        = "SCRAM-SHA-512"
    super_users                    = "User:admin;User:CN=strata-sample-broker"
    allow_everyone                 = false
    http_listener                  = "0.0.0.0:9644"
    controller_quorum_voters       = "1@10.0.1.10:9093,2@10.0.2.10:9093,3@10.0.3.10:9093"
    log_dirs                       = "/var/lib/strata/data"
    remote_storage_uri             = "s3://strata-sample-segments/strata"
    remote_storage_s3_endpoint     = "http://127.0.0.1:9000"
    remote_storage_s3_region       = "eu-west-1"
    default_replication_factor     = 3
    min_insync_replicas            = 2
    num_partitions                 = 6
  })
}
