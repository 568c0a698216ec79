# Renders the strata-cluster module's config template for one sample broker, without
# any provider, so scripts/test-terraform.sh can hand the result to
# `strata serve --print-config` even where the moto apply cannot run. The moto apply
# checks the configs the module itself renders into the launch templates' user data.
# This sample is a broker-only node (no controller role) pointing at an S3-compatible
# endpoint, the shape the module's three-broker example does not produce.

terraform {
  required_version = ">= 1.5"
}

output "strata_toml" {
  value = templatefile("${path.module}/../../../terraform/modules/strata-cluster/templates/strata.toml.tftpl", {
    node_id                    = 4
    process_roles              = ["broker"]
    listeners                  = "PLAINTEXT://0.0.0.0:9092"
    advertised_listeners       = "PLAINTEXT://10.0.1.11:9092"
    http_listener              = "0.0.0.0:9644"
    controller_quorum_voters   = "1@10.0.1.10:9093,2@10.0.2.10:9093,3@10.0.3.10:9093"
    log_dirs                   = "/var/lib/strata/data"
    remote_storage_uri         = "s3://strata-sample-segments/strata"
    remote_storage_s3_endpoint = "http://127.0.0.1:9000"
    remote_storage_s3_region   = "eu-west-1"
    default_replication_factor = 3
    min_insync_replicas        = 2
    num_partitions             = 6
  })
}
