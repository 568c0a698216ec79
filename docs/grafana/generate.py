#!/usr/bin/env python3
"""Writes docs/grafana/strata.json, the Grafana dashboard over Strata's metrics.

Edit the panel list here and re-run; the JSON is generated so every panel has the same shape.
"""
import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, exprs, x, y, w=8, h=8, unit="short", kind="timeseries"):
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"datasource": DS, "expr": e, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (e, legend) in enumerate(exprs)
        ],
    }


def row(pid, title, y):
    return {"id": pid, "type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


panels = []
pid = 1
y = 0


def add(p):
    global pid
    p["id"] = pid
    pid += 1
    panels.append(p)


add(row(0, "Cluster overview", y)); y += 1
add(panel(0, "Brokers up", [('sum(up{job="strata"})', "up")], 0, y, 4, 4, kind="stat"))
add(panel(0, "Partitions", [("sum(strata_replication_partitions)", "partitions")], 4, y, 4, 4, kind="stat"))
add(panel(0, "Offline partitions", [("max(strata_replication_offline_partitions)", "offline")], 8, y, 4, 4, kind="stat"))
add(panel(0, "Under-replicated", [("sum(strata_replication_under_replicated_partitions)", "under-replicated")], 12, y, 4, 4, kind="stat"))
add(panel(0, "Under min ISR", [("sum(strata_replication_under_min_isr_partitions)", "under min ISR")], 16, y, 4, 4, kind="stat"))
add(panel(0, "Connections", [("sum(strata_server_connections)", "connections")], 20, y, 4, 4, kind="stat"))
y += 4

add(row(0, "Throughput", y)); y += 1
add(panel(0, "Bytes in by topic", [("sum by (topic) (rate(strata_broker_topic_in_bytes_total[1m]))", "{{topic}}")], 0, y, unit="Bps"))
add(panel(0, "Bytes out by topic", [("sum by (topic) (rate(strata_broker_topic_out_bytes_total[1m]))", "{{topic}}")], 8, y, unit="Bps"))
add(panel(0, "Records in by topic", [("sum by (topic) (rate(strata_broker_topic_in_records_total[1m]))", "{{topic}}")], 16, y, unit="ops"))
y += 8
add(panel(0, "Requests by API", [("sum by (api) (rate(strata_server_requests_total[1m]))", "{{api}}")], 0, y, unit="reqps"))
add(panel(0, "Network", [("sum(rate(strata_server_received_bytes_total[1m]))", "received"), ("sum(rate(strata_server_sent_bytes_total[1m]))", "sent")], 8, y, unit="Bps"))
add(panel(0, "Produce errors by topic", [("sum by (topic) (rate(strata_broker_topic_produce_errors_total[5m]))", "{{topic}}")], 16, y, unit="ops"))
y += 8

add(row(0, "Latency", y)); y += 1
for i, api in enumerate(["Produce", "Fetch", "Metadata"]):
    add(panel(0, f"{api} latency", [
        (f'histogram_quantile(0.5, sum by (le) (rate(strata_server_request_latency_seconds_bucket{{api="{api}"}}[5m])))', "p50"),
        (f'histogram_quantile(0.99, sum by (le) (rate(strata_server_request_latency_seconds_bucket{{api="{api}"}}[5m])))', "p99"),
        (f'histogram_quantile(0.999, sum by (le) (rate(strata_server_request_latency_seconds_bucket{{api="{api}"}}[5m])))', "p99.9"),
    ], 8 * i, y, unit="s"))
y += 8
add(panel(0, "fsync (group commit) latency", [
    ("histogram_quantile(0.5, sum by (le) (rate(strata_log_flush_latency_seconds_bucket[5m])))", "p50"),
    ("histogram_quantile(0.99, sum by (le) (rate(strata_log_flush_latency_seconds_bucket[5m])))", "p99"),
], 0, y, unit="s"))
add(panel(0, "Requests waiting (acks, long-poll)", [("sum by (api) (strata_server_requests_waiting)", "{{api}}")], 8, y))
add(panel(0, "Rejected requests and connections", [
    ("sum by (reason) (rate(strata_server_request_errors_total[5m]))", "{{reason}}"),
    ("sum(rate(strata_server_connections_rejected_total[5m]))", "connections refused"),
], 16, y, unit="ops"))
y += 8

# Throttle time is observed for every response to a client under a quota (0 within it), so the
# sum's rate is the seconds of waiting handed out per second, and p99 shows how long waits get.
add(row(0, "Client quotas", y)); y += 1
add(panel(0, "Throttle time handed out (s/s)", [("sum by (kind) (rate(strata_quota_throttle_time_seconds_sum[5m]))", "{{kind}}")], 0, y))
add(panel(0, "Throttled responses", [("sum by (kind) (rate(strata_quota_throttled_responses_total[5m]))", "{{kind}}")], 8, y, unit="ops"))
add(panel(0, "Throttle time p99 and clients under a quota", [
    ('histogram_quantile(0.99, sum by (le, kind) (rate(strata_quota_throttle_time_seconds_bucket[5m])))', "p99 {{kind}}"),
    ("sum by (kind) (strata_quota_tracked_clients)", "clients {{kind}}"),
], 16, y))
y += 8

add(row(0, "Replication health", y)); y += 1
add(panel(0, "Leaders per broker", [("strata_replication_leaders", "{{instance}}")], 0, y))
add(panel(0, "Under-replicated / under min ISR", [
    ("sum(strata_replication_under_replicated_partitions)", "under-replicated"),
    ("sum(strata_replication_under_min_isr_partitions)", "under min ISR"),
    ("max(strata_replication_offline_partitions)", "offline"),
], 8, y))
add(panel(0, "Local log size by topic", [("sum by (topic) (strata_log_size_bytes)", "{{topic}}")], 16, y, unit="bytes"))
y += 8
add(panel(0, "ISR shrinks and expands", [
    ("sum(rate(strata_replication_isr_shrinks_total[5m]))", "shrinks"),
    ("sum(rate(strata_replication_isr_expands_total[5m]))", "expands"),
], 0, y, unit="ops"))
add(panel(0, "Leaders fetched from (follower fetchers)", [("strata_replication_follower_fetchers", "{{instance}}")], 8, y))
y += 8

# Lag is exported by the broker that coordinates the group, for the partitions it leads; while
# a coordinator moves two brokers may briefly export the same group, hence max rather than sum.
add(row(0, "Groups and lag", y)); y += 1
add(panel(0, "Groups by state", [("sum by (state) (strata_group_groups)", "{{state}}")], 0, y, 8, 8))
add(panel(0, "Members and rebalances", [
    ("sum(strata_group_members)", "members"),
    ("sum(rate(strata_group_rebalances_total[5m])) * 60", "rebalances / min"),
], 8, y, 8, 8))
add(panel(0, "Lag series left out (metrics.group.lag.max.series)", [("sum(strata_group_consumer_lag_series_dropped)", "left out")], 16, y, 8, 8))
y += 8
add(panel(0, "Consumer lag by group (records)", [("max by (group) (strata_group_consumer_lag_sum_records)", "{{group}}")], 0, y, 12, 8))
add(panel(0, "Consumer lag growth by group (records/s)", [("max by (group) (deriv(strata_group_consumer_lag_sum_records[10m]))", "{{group}}")], 12, y, 12, 8))
y += 8
add(panel(0, "Most lagging partitions (records)", [
    ("topk(10, max by (group, topic, partition) (strata_group_consumer_lag_records))", "{{group}} {{topic}}-{{partition}}"),
], 0, y, 24, 8))
y += 8

add(row(0, "Metadata quorum", y)); y += 1
add(panel(0, "Active controller", [("strata_controller_active == 1", "{{instance}}")], 0, y, 4, 4, kind="stat"))
add(panel(0, "Controllers active", [("sum(strata_controller_active)", "active")], 4, y, 4, 4, kind="stat"))
add(panel(0, "Fenced brokers", [("max(strata_controller_fenced_brokers)", "fenced")], 8, y, 4, 4, kind="stat"))
add(panel(0, "Registered brokers", [("max(strata_controller_registered_brokers)", "registered")], 12, y, 4, 4, kind="stat"))
add(panel(0, "Term (controller epoch)", [("max(strata_controller_term)", "term")], 16, y, 4, 4, kind="stat"))
add(panel(0, "Elections (1h)", [("max(changes(strata_controller_term[1h]))", "term changes")], 20, y, 4, 4, kind="stat"))
y += 4
add(panel(0, "Metadata log offsets", [
    ("strata_controller_log_end_offset", "log end {{instance}}"),
    ("strata_controller_committed_offset", "committed {{instance}}"),
    ("strata_controller_image_offset", "image {{instance}}"),
], 0, y))
add(panel(0, "Commit lag (records)", [("strata_controller_commit_lag_records", "{{instance}}")], 8, y))
add(panel(0, "Apply lag behind the active controller", [
    ("scalar(max(strata_controller_committed_offset * strata_controller_active)) - strata_controller_applied_offset", "{{instance}}"),
], 16, y))
y += 8

# Labelled counters (TLS handshake failures by reason, authorization results, fetch requests by
# session context) appear only once they have a sample, so the panels here use the series every
# broker exports from its start.
add(row(0, "Connections, fetch sessions and quota shares", y)); y += 1
add(panel(0, "Connections refused or delayed (per s)", [
    ("sum(rate(strata_server_connections_rejected_per_ip_total[5m]))", "over max.connections.per.ip"),
    ("sum(rate(strata_server_connections_throttled_total[5m]))", "delayed by max.connection.creation.rate"),
    ("sum(rate(strata_server_connections_rejected_total[5m]))", "over max.connections"),
], 0, y))
add(panel(0, "Fetch sessions: partitions and evictions", [
    ("sum(strata_fetch_session_cache_partitions)", "partitions in sessions"),
    ("sum(rate(strata_fetch_session_cache_evictions_total[5m])) * 60", "evictions / min"),
], 8, y))
add(panel(0, "Follower fetch bytes (per s)", [
    ("sum by (instance) (rate(strata_replica_fetcher_request_bytes_total[5m]))", "sent {{instance}}"),
    ("sum by (instance) (rate(strata_replica_fetcher_response_bytes_total[5m]))", "received {{instance}}"),
], 16, y, unit="Bps"))
y += 8
add(panel(0, "Cluster-wide limits with a share here", [("strata_quota_cluster_shares", "{{instance}}")], 0, y))
add(panel(0, "Share updates from the controller (per min)", [("sum by (instance) (rate(strata_quota_cluster_share_updates_total[5m])) * 60", "{{instance}}")], 8, y))
add(panel(0, "Request time counted for request_percentage", [("sum by (instance) (rate(strata_quota_request_time_seconds_total[1m]))", "{{instance}}")], 16, y, unit="percentunit"))
y += 8

add(row(0, "Security", y)); y += 1
add(panel(0, "Authorization denials (per s)", [
    ("sum by (resource_type) (rate(strata_authorization_denied_total[5m]))", "{{resource_type}}"),
], 0, y, unit="ops"))
add(panel(0, "SASL authentication failures (per s)", [
    ("sum by (listener, reason) (rate(strata_server_sasl_authentication_failures_total[5m]))", "{{listener}} {{reason}}"),
], 8, y, unit="ops"))
add(panel(0, "SASL authentications (per s)", [
    ("sum by (listener) (rate(strata_server_sasl_authentications_total[5m]))", "{{listener}}"),
], 16, y, unit="ops"))
y += 8
add(panel(0, "TLS handshake failures (per s)", [
    ("sum by (listener, reason) (rate(strata_server_tls_handshake_failures_total[5m]))", "{{listener}} {{reason}}"),
], 0, y, unit="ops"))
add(panel(0, "Denials by principal and operation (top 10, per s)", [
    ('topk(10, sum by (principal, operation) (rate(strata_authorization_total{result="denied"}[5m])))', "{{principal}} {{operation}}"),
], 8, y, unit="ops"))
add(panel(0, "TLS certificate reloads (1h)", [
    ("sum by (instance, result) (increase(strata_tls_certificate_reloads_total[1h]))", "{{instance}} {{result}}"),
], 16, y))
y += 8

# Mirror series exist only on a broker leading mirror partitions of the target cluster.
add(row(0, "Mirror links", y)); y += 1
add(panel(0, "Mirror lag (offsets)", [('max by (link, topic) (strata_mirror_partition_lag_offsets{job="strata"})', "{{link}} {{topic}}")], 0, y, 6, 8))
add(panel(0, "Mirror time lag", [('max by (link, topic) (strata_mirror_partition_time_lag_seconds{job="strata"})', "{{link}} {{topic}}")], 6, y, 6, 8, unit="s"))
add(panel(0, "Mirrored bytes/s", [('sum by (link) (rate(strata_mirror_bytes_total{job="strata"}[1m]))', "{{link}}")], 12, y, 6, 8, unit="Bps"))
add(panel(0, "Mirror fetch errors and failed partitions", [
    ('sum by (link) (rate(strata_mirror_fetch_errors_total{job="strata"}[5m]))', "errors/s {{link}}"),
    ('count by (link) (strata_mirror_partition_state{job="strata"} == -1)', "failed {{link}}"),
], 18, y, 6, 8))
y += 8

add(row(0, "Object store (tiered storage)", y)); y += 1
add(panel(0, "Store requests by operation (per s)", [("sum by (op) (rate(strata_tiering_store_requests_total[5m]))", "{{op}}")], 0, y, unit="reqps"))
add(panel(0, "Store bytes by operation (per s)", [("sum by (op) (rate(strata_tiering_store_bytes_total[5m]))", "{{op}}")], 8, y, unit="Bps"))
add(panel(0, "Request cost at S3 Standard list prices (USD/h)", [
    ('sum(rate(strata_tiering_store_requests_total{op=~"put|list"}[1h])) * 3600 * 0.005 / 1000', "PUT, COPY, POST, LIST ($0.005 / 1,000)"),
    ('sum(rate(strata_tiering_store_requests_total{op=~"get|head"}[1h])) * 3600 * 0.0004 / 1000', "GET, HEAD ($0.0004 / 1,000)"),
], 16, y, unit="currencyUSD"))
y += 8
add(panel(0, "Remote reads: bytes served and read-ahead", [
    ("sum(rate(strata_tiering_remote_fetch_bytes_total[5m]))", "served to fetchers"),
    ('sum(rate(strata_tiering_store_bytes_total{op="get"}[5m]))', "read from the store"),
], 0, y, unit="Bps"))
add(panel(0, "Chunk cache: hits, misses, read-ahead (per s)", [
    ("sum(rate(strata_tiering_cache_hits_total[5m]))", "hits"),
    ("sum(rate(strata_tiering_cache_misses_total[5m]))", "misses"),
    ("sum(rate(strata_tiering_cache_prefetched_chunks_total[5m]))", "read ahead"),
], 8, y, unit="ops"))
add(panel(0, "Slowed down: store SlowDown answers and the remote-read quota", [
    ("sum(rate(strata_tiering_store_throttled_total[5m]))", "SlowDown / 503 / 429 per s"),
    ("sum(rate(strata_tiering_remote_fetch_throttle_seconds_total[5m]))", "quota delay (s per s)"),
], 16, y))
y += 8
add(panel(0, "Store circuit breaker: state (0 closed, 1 open, 2 half-open)", [("max by (instance) (strata_tiering_store_breaker_state)", "{{instance}}")], 0, y))
add(panel(0, "Store calls refused by the open breaker, and openings (per s)", [
    ("sum by (instance) (rate(strata_tiering_store_breaker_rejected_total[5m]))", "refused {{instance}}"),
    ("sum by (instance) (rate(strata_tiering_store_breaker_opened_total[5m]))", "opened {{instance}}"),
], 8, y, unit="ops"))
y += 8

# The strata_txn_* series come from the broker coordinating the transactional ids (it leads
# their __transaction_state partition); the strata_log_* ones from the leader of each data
# partition. An LSO lag that only grows, or an oldest open transaction older than
# transaction.max.timeout.ms, is a hanging transaction (docs/operations.md, "Transactions").
add(row(0, "Transactions", y)); y += 1
add(panel(0, "Open transactions", [
    ("sum by (instance) (strata_txn_open_transactions)", "coordinated by {{instance}}"),
    ("sum by (topic) (strata_log_open_transactions)", "on {{topic}}"),
], 0, y))
add(panel(0, "Oldest open transaction age", [("max by (instance) (strata_txn_oldest_open_transaction_age_seconds)", "{{instance}}")], 8, y, unit="s"))
add(panel(0, "Last stable offset lag by topic (records)", [("max by (topic) (strata_log_last_stable_offset_lag)", "{{topic}}")], 16, y))
y += 8
add(panel(0, "Transaction markers written (per s)", [("sum by (instance) (rate(strata_txn_markers_written_total[5m]))", "{{instance}}")], 0, y, unit="ops"))
add(panel(0, "Transactions aborted for their timeout (per min)", [("sum by (instance) (rate(strata_txn_timed_out_total[5m])) * 60", "{{instance}}")], 8, y))
add(panel(0, "Transactions completed by result (per s)", [("sum by (result) (rate(strata_txn_completed_total[5m]))", "{{result}}")], 16, y, unit="ops"))
y += 8

add(row(0, "Disk pressure", y)); y += 1
add(panel(0, "Log dir disk usage", [('max by (instance, log_dir) (strata_log_dir_disk_usage_ratio{job="strata"})', "{{instance}} {{log_dir}}")], 0, y, unit="percentunit"))
add(panel(0, "Disk pressure state (0 normal, 1 high, 2 refusing)", [('max by (instance, log_dir) (strata_log_dir_disk_pressure_state{job="strata"})', "{{instance}} {{log_dir}}")], 8, y))
add(panel(0, "Produce refused and uploaded segments deleted (per s)", [
    ('sum by (instance, log_dir) (rate(strata_log_dir_produce_refused_total{job="strata"}[5m]))', "refused {{instance}} {{log_dir}}"),
    ('sum by (instance, log_dir) (rate(strata_log_dir_disk_pressure_deleted_segments_total{job="strata"}[5m]))', "deleted {{instance}} {{log_dir}}"),
], 16, y))
y += 8

add(row(0, "Process", y)); y += 1
add(panel(0, "CPU", [("rate(process_cpu_seconds_total{job=\"strata\"}[1m])", "{{instance}}")], 0, y, unit="percentunit"))
add(panel(0, "Resident memory", [("process_resident_memory_bytes{job=\"strata\"}", "{{instance}}")], 8, y, unit="bytes"))
add(panel(0, "Open files", [("process_open_fds{job=\"strata\"}", "{{instance}}"), ("process_max_fds{job=\"strata\"}", "limit {{instance}}")], 16, y))
y += 8

dashboard = {
    "title": "Strata",
    "uid": "strata-overview",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "time": {"from": "now-1h", "to": "now"},
    "refresh": "30s",
    "tags": ["strata", "kafka"],
    "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}]},
    "panels": panels,
}
out = Path(__file__).with_name("strata.json")
out.write_text(json.dumps(dashboard, indent=2) + "\n")
print(f"wrote {out} with {len(panels)} panels")
