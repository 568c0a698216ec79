"""Assert, through the AWS API of a moto_server, what `terraform apply` of
terraform/examples/single-region created (mode "present") or that `terraform destroy`
removed it (mode "absent").

Usage:
  python3 moto_assert.py present ENDPOINT OUTPUTS_JSON RENDER_DIR
  python3 moto_assert.py absent  ENDPOINT OUTPUTS_JSON
  python3 moto_assert.py noop    PLAN_JSON          (`terraform show -json` of a re-plan)

OUTPUTS_JSON is `terraform output -json` of the applied example. In "present" mode the
strata.toml embedded in each broker's launch-template user data is written to
RENDER_DIR/broker-<node id>.toml for the config check that follows.

Prints one "PASS: ..." or "FAIL: ..." line per check; exits 1 if any check failed.
"""

import base64
import json
import re
import sys
import tomllib

import boto3
from botocore.exceptions import ClientError

PREFIX = "strata"  # the example's remote_storage_prefix (module default)
EXPECTED_KEYS = {
    "node.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.listener.names",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.truststore.location",
    "listener.name.internal.ssl.client.auth",
    "listener.name.controller.ssl.client.auth",  # every broker of the example is a controller
    "sasl.enabled.mechanisms",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "http.listener",
    "controller.quorum.voters",
    "log.dirs",
    "remote.storage.uri",
    "remote.storage.s3.endpoint",
    "remote.storage.s3.region",
    "default.replication.factor",
    "min.insync.replicas",
    "num.partitions",
}

failures = 0
passes = 0


def check(name, fn):
    """Run one check; fn returns None/True on success or a string/False on failure."""
    global failures, passes
    try:
        result = fn()
        ok = result is None or result is True
        detail = "" if ok else f" ({result})"
    except Exception as exc:  # an API error is a failed check, not a crash
        ok, detail = False, f" ({type(exc).__name__}: {exc})"
    if ok:
        passes += 1
        print(f"PASS: {name}")
    else:
        failures += 1
        print(f"FAIL: {name}{detail}")


def flatten_toml(table, prefix=""):
    """Dotted TOML keys parse as nested tables; flatten back to Kafka property names."""
    flat = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_toml(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def extract_toml(user_data):
    m = re.search(r"<<'STRATA_TOML_EOF'\n(.*?)\nSTRATA_TOML_EOF\n", user_data, re.S)
    if not m:
        raise AssertionError("no strata.toml heredoc in the user data")
    return m.group(1) + "\n"


def noop(plan_path):
    """A second plan right after apply must change nothing, apart from what moto reports
    differently from AWS (each tolerance below names the quirk, and is exact):

    - security group rules that reference a group: moto returns the group as
      "<account>/sg-..." (AWS does so only across accounts) and drops the rule's
      description;
    - launch templates: moto echoes the template's own tags back as an extra
      tag specification of resource type "launch-template", so the provider plans an
      update (which also recomputes default_version/latest_version);
    - ACM Private CA: moto ignores UsageMode and reports every CA as
      SHORT_LIVED_CERTIFICATE, so the module's GENERAL_PURPOSE plans an update.
    """
    with open(plan_path) as f:
        plan = json.load(f)

    def sg_rule_quirk(before, after, diff):
        return (
            diff <= {"referenced_security_group_id", "description"}
            and str(before.get("referenced_security_group_id")).split("/")[-1] == after.get("referenced_security_group_id")
            and (before.get("description") == after.get("description") or before.get("description") is None)
        )

    def launch_template_quirk(before, after, diff):
        echoed = [t for t in before.get("tag_specifications") or [] if t["resource_type"] != "launch-template"]
        return diff <= {"tag_specifications", "default_version", "latest_version"} and echoed == after.get("tag_specifications")

    def ca_usage_mode_quirk(before, after, diff):
        return diff == {"usage_mode"} and before.get("usage_mode") == "SHORT_LIVED_CERTIFICATE" and after.get("usage_mode") == "GENERAL_PURPOSE"

    def drift():
        bad = []
        for rc in plan.get("resource_changes", []):
            actions = rc["change"]["actions"]
            if actions in (["no-op"], ["read"]):
                continue
            before, after = rc["change"]["before"] or {}, rc["change"]["after"] or {}
            diff = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
            quirk = actions == ["update"] and (
                (rc["type"].startswith("aws_vpc_security_group_") and sg_rule_quirk(before, after, diff))
                or (rc["type"] == "aws_launch_template" and launch_template_quirk(before, after, diff))
                or (rc["type"] == "aws_acmpca_certificate_authority" and ca_usage_mode_quirk(before, after, diff))
            )
            if not quirk:
                bad.append(f"{rc['address']} {actions} {sorted(diff)}")
        return "; ".join(bad) if bad else None

    check("re-plan after apply is a no-op (idempotent module; moto's known read-back quirks excepted)", drift)
    print(f"moto checks: {passes} passed, {failures} failed")
    sys.exit(1 if failures else 0)


def main():
    if sys.argv[1] == "noop":
        noop(sys.argv[2])
    mode, endpoint, outputs_path = sys.argv[1], sys.argv[2], sys.argv[3]
    render_dir = sys.argv[4] if len(sys.argv) > 4 else None
    with open(outputs_path) as f:
        out = {k: v["value"] for k, v in json.load(f).items()}

    kw = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3 = boto3.client("s3", **kw)
    iam = boto3.client("iam", **kw)
    ec2 = boto3.client("ec2", **kw)
    elb = boto3.client("elbv2", **kw)
    kms = boto3.client("kms", **kw)
    sm = boto3.client("secretsmanager", **kw)
    pca = boto3.client("acm-pca", **kw)
    sec = dict(sm=sm, pca=pca, secret_arn=out["admin_password_secret_arn"], ca_arn=out["private_ca_arn"])

    bucket = out["bucket_name"]
    bucket_arn = f"arn:aws:s3:::{bucket}"
    prefix_objects = f"{bucket_arn}/{PREFIX}/*"
    role = out["iam_role_name"]
    lt_ids = out["broker_launch_template_ids"]
    instance_ids = out["broker_instance_ids"]
    nlb_arn = out["nlb_arn"]
    key_arn = out["kms_key_arn"]

    if mode == "present":
        present(s3, iam, ec2, elb, kms, out, bucket, bucket_arn, prefix_objects, role, lt_ids, instance_ids, nlb_arn, key_arn, render_dir)
        present_security(sec, iam, ec2, elb, out, role, lt_ids, key_arn)
    else:
        absent(s3, iam, ec2, elb, kms, bucket, role, lt_ids, instance_ids, nlb_arn, key_arn)
        absent_security(sec)

    print(f"moto checks: {passes} passed, {failures} failed")
    sys.exit(1 if failures else 0)


def present(s3, iam, ec2, elb, kms, out, bucket, bucket_arn, prefix_objects, role, lt_ids, instance_ids, nlb_arn, key_arn, render_dir):
    # --- bucket ---------------------------------------------------------------
    check("bucket exists", lambda: s3.head_bucket(Bucket=bucket) and None)

    def encryption():
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        d = rules[0]["ApplyServerSideEncryptionByDefault"]
        if d["SSEAlgorithm"] != "aws:kms" or d.get("KMSMasterKeyID") != key_arn:
            return f"got {d}"
        if not rules[0].get("BucketKeyEnabled"):
            return "bucket key not enabled"

    check("bucket default encryption is SSE-KMS with the cluster key", encryption)

    def public_access_block():
        c = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        bad = [k for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets") if not c.get(k)]
        return f"off: {bad}" if bad else None

    check("bucket public access block: all four on", public_access_block)

    def versioning_off():
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        return None if status in (None, "Suspended") else f"versioning {status}"

    check("bucket versioning is off", versioning_off)

    def lifecycle():
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        ok = [r for r in rules if r["Status"] == "Enabled" and r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")]
        return None if ok else f"no enabled abort-multipart rule in {rules}"

    check("bucket lifecycle aborts incomplete multipart uploads", lifecycle)

    def bucket_policy():
        pol = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        sids = {s["Sid"]: s for s in pol["Statement"]}
        tls = sids.get("DenyInsecureTransport")
        if not tls or tls["Effect"] != "Deny" or tls["Condition"]["Bool"]["aws:SecureTransport"] != "false":
            return "no TLS-only statement"
        conf = sids.get("BrokerRoleObjectsOnlyUnderPrefix")
        if not conf or conf["Effect"] != "Deny" or conf["NotResource"] != prefix_objects:
            return f"broker role not confined to {prefix_objects}: {conf}"
        if not conf["Principal"]["AWS"].endswith(f":role/{role}"):
            return f"confinement names {conf['Principal']}, not the broker role"

    check("bucket policy: TLS only, broker role confined to the prefix", bucket_policy)

    # --- IAM --------------------------------------------------------------------
    def role_policy_scoped():
        names = sorted(iam.list_role_policies(RoleName=role)["PolicyNames"])
        if names != ["strata-security", "strata-tiered-storage"]:
            return f"inline policies {names}"
        doc = iam.get_role_policy(RoleName=role, PolicyName="strata-tiered-storage")["PolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        for st in doc["Statement"]:
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if st["Effect"] != "Allow":
                return f"unexpected {st['Effect']}"
            for r in resources:
                if r == "*" or r == f"{bucket_arn}/*":
                    return f"{st['Sid']} grants {r}"
            s3_actions = [a for a in actions if a.startswith("s3:")]
            if s3_actions == ["s3:ListBucket"]:
                if resources != [bucket_arn] or st["Condition"]["StringLike"]["s3:prefix"] != [PREFIX, f"{PREFIX}/*"]:
                    return f"ListBucket not limited to the prefix: {st}"
            elif s3_actions and resources != [prefix_objects]:
                return f"{st['Sid']} reaches {resources}, not only {prefix_objects}"
            if any(a.startswith("kms:") for a in actions) and resources != [key_arn]:
                return f"KMS statement reaches {resources}"
            if any(not a.startswith(("s3:", "kms:")) for a in actions):
                return f"{st['Sid']} grants {actions} beyond S3 and KMS"

    check("IAM role policy strata-tiered-storage allows only the bucket prefix (and the cluster key)", role_policy_scoped)

    def assume_role():
        doc = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        principals = [s["Principal"].get("Service") for s in doc["Statement"]]
        return None if principals == ["ec2.amazonaws.com"] else f"assumable by {principals}"

    check("IAM role is assumable by EC2 only", assume_role)

    def instance_profile():
        profiles = iam.list_instance_profiles_for_role(RoleName=role)["InstanceProfiles"]
        return None if len(profiles) == 1 else f"{len(profiles)} instance profiles"

    check("instance profile wraps the role", instance_profile)

    # --- KMS ----------------------------------------------------------------------
    check("KMS key rotation is on", lambda: kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] or "rotation off")

    # --- launch templates and the user data's strata.toml ---------------------
    voters = out["controller_quorum_voters"]

    def launch_templates():
        if len(lt_ids) != 3:
            return f"{len(lt_ids)} launch templates"
        for i, lt in enumerate(lt_ids):
            node_id = i + 1
            data = ec2.describe_launch_template_versions(LaunchTemplateId=lt, Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
            if data["MetadataOptions"]["HttpTokens"] != "required":
                return f"{lt}: IMDSv2 not required"
            if not data.get("IamInstanceProfile", {}).get("Arn"):
                return f"{lt}: no instance profile"
            if not all(b["Ebs"].get("Encrypted") for b in data["BlockDeviceMappings"]):
                return f"{lt}: unencrypted root volume"
            user_data = base64.b64decode(data["UserData"]).decode()
            for needle in (
                "systemctl enable --now strata.service",
                "ExecStart=/usr/local/bin/strata serve --config /etc/strata/strata.toml",
                "https://example.invalid/strata",
            ):
                if needle not in user_data:
                    return f"{lt}: user data lacks {needle!r}"
            text = extract_toml(user_data)
            cfg = flatten_toml(tomllib.loads(text))
            if set(cfg) != EXPECTED_KEYS:
                return f"{lt}: keys {sorted(set(cfg) ^ EXPECTED_KEYS)} differ from Strata's"
            if cfg["node.id"] != node_id or cfg["controller.quorum.voters"] != voters:
                return f"{lt}: node.id {cfg['node.id']} / voters {cfg['controller.quorum.voters']}"
            if cfg["remote.storage.uri"] != f"s3://{bucket}/{PREFIX}":
                return f"{lt}: remote.storage.uri {cfg['remote.storage.uri']}"
            if text != out["broker_configs"][i]:
                return f"{lt}: user data config differs from the module's broker_configs output"
            if render_dir:
                with open(f"{render_dir}/broker-{node_id}.toml", "w") as f:
                    f.write(text)
                with open(f"{render_dir}/user-data-{node_id}.sh", "w") as f:
                    f.write(user_data)

    check("3 launch templates: IMDSv2, instance profile, encrypted root, user data with parseable strata.toml per node", launch_templates)

    # --- instances, interfaces, volumes -----------------------------------------
    def instances_spread():
        res = ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
        insts = {i["InstanceId"]: i for r in res for i in r["Instances"]}
        if any(insts[i]["State"]["Name"] != "running" for i in instance_ids):
            return "not all running"
        azs, ips = [], []
        for iid in instance_ids:
            primary = [n for n in insts[iid]["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0][0]
            eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[primary["NetworkInterfaceId"]])["NetworkInterfaces"][0]
            azs.append(eni["AvailabilityZone"])
            ips.append(eni["PrivateIpAddress"])
        if len(set(azs)) != 3:
            return f"AZs {azs}"
        expected = ",".join(f"{n}@{ip}:9093" for n, ip in enumerate(ips, 1))
        if expected != voters:
            return f"voters {voters} != interface IPs {expected}"

    check("3 running brokers in 3 AZs; voters are their fixed interfaces' IPs", instances_spread)

    def data_volumes():
        vols = ec2.describe_volumes(Filters=[{"Name": "tag:strata:cluster", "Values": ["strata-demo"]}])["Volumes"]
        data = [v for v in vols if v["Size"] == 200]
        if len(data) != 3:
            return f"{len(data)} data volumes"
        for v in data:
            if not v["Encrypted"] or v.get("KmsKeyId") != key_arn:
                return f"{v['VolumeId']} not encrypted with the cluster key"
            if [a["Device"] for a in v["Attachments"]] != ["/dev/sdf"]:
                return f"{v['VolumeId']} attachments {v['Attachments']}"
        if sorted(a["InstanceId"] for v in data for a in v["Attachments"]) != sorted(instance_ids):
            return "data volumes not one per broker"

    check("one encrypted data volume attached to each broker", data_volumes)

    def security_group():
        iid = instance_ids[0]
        res = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        eni_id = [n for n in res["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0][0]["NetworkInterfaceId"]
        sg_id = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
        sg = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]
        ports = {}
        for p in sg["IpPermissions"]:
            ports.setdefault(p["FromPort"], []).append(p)
        if sorted(ports) != [9092, 9093, 9094, 9644]:
            return f"ingress ports {sorted(ports)}"
        for port in (9093, 9094):
            rules = ports[port]
            if any(p["IpRanges"] or p["Ipv6Ranges"] or p["PrefixListIds"] for p in rules):
                return f"port {port} open to a CIDR"
            if {g["GroupId"].split("/")[-1] for p in rules for g in p["UserIdGroupPairs"]} != {sg_id}:
                return f"port {port} not limited to the group"

    check("security group: 9092/9093/9094/9644 in, controller (9093) and INTERNAL (9094) only within the group", security_group)

    # --- load balancer --------------------------------------------------------
    def nlb():
        lb = elb.describe_load_balancers(LoadBalancerArns=[nlb_arn])["LoadBalancers"][0]
        if lb["Type"] != "network" or lb["Scheme"] != "internal":
            return f"{lb['Type']}/{lb['Scheme']}"
        if not out["bootstrap_servers"] == f"{lb['DNSName']}:9092":
            return f"bootstrap_servers {out['bootstrap_servers']}"
        listeners = elb.describe_listeners(LoadBalancerArn=nlb_arn)["Listeners"]
        if [(l["Port"], l["Protocol"]) for l in listeners] != [(9092, "TCP")]:
            return f"listeners {listeners}"
        # No certificate: the NLB cannot terminate TLS. (moto reports a default SslPolicy
        # on every listener, TCP ones included; AWS reports none for TCP.)
        if listeners[0].get("Certificates"):
            return f"the listener terminates TLS: {listeners[0]}"
        tg_arn = listeners[0]["DefaultActions"][0]["TargetGroupArn"]
        tg = elb.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
        if tg["Protocol"] != "TCP" or tg["Port"] != 9092 or tg.get("HealthCheckPath") != "/ready":
            return f"target group {tg['Protocol']}:{tg['Port']} {tg.get('HealthCheckPath')}"
        targets = sorted(t["Target"]["Id"] for t in elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"])
        if targets != sorted(instance_ids):
            return f"targets {targets}"

    check("internal NLB: TCP 9092 listener (TLS passthrough) to all 3 brokers, /ready health check", nlb)

    def scrape_targets():
        t = out["prometheus_scrape_targets"]
        return None if len(t) == 3 and all(x.endswith(":9644") for x in t) else f"{t}"

    check("outputs: 3 Prometheus scrape targets on :9644", scrape_targets)


def present_security(sec, iam, ec2, elb, out, role, lt_ids, key_arn):
    sm, pca, secret_arn, ca_arn = sec["sm"], sec["pca"], sec["secret_arn"], sec["ca_arn"]
    user_data = [
        base64.b64decode(
            ec2.describe_launch_template_versions(LaunchTemplateId=lt, Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]
        ).decode()
        for lt in lt_ids
    ]

    def admin_secret():
        d = sm.describe_secret(SecretId=secret_arn)
        if d.get("KmsKeyId") not in (key_arn, key_arn.split("/")[-1]):
            return f"secret encrypted with {d.get('KmsKeyId')}, not the cluster key"
        value = sm.get_secret_value(SecretId=secret_arn)["SecretString"]
        if len(value) != 32 or not value.isalnum():
            return f"the generated password is {len(value)} characters, alphanumeric={value.isalnum()}"

    check("admin secret: KMS-encrypted with the cluster key, holds a generated 32-character password", admin_secret)

    def no_secret_in_user_data_or_outputs():
        value = sm.get_secret_value(SecretId=secret_arn)["SecretString"]
        for i, ud in enumerate(user_data):
            if value in ud:
                return f"broker {i + 1}'s user data contains the admin password"
            if "-----BEGIN" in ud or "PRIVATE KEY" in ud:
                return f"broker {i + 1}'s user data contains PEM material"
            if secret_arn not in ud:
                return f"broker {i + 1}'s user data does not name the secret"
        if value in json.dumps(out):
            return "an output contains the admin password"

    check("the live admin password is in no user data and no output; no PEM material in user data", no_secret_in_user_data_or_outputs)

    def security_policy():
        doc = iam.get_role_policy(RoleName=role, PolicyName="strata-security")["PolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if any("*" in r for r in resources) or any("*" in a for a in actions):
                return f"{st['Sid']}: wildcard in {actions} on {resources}"
            if any(a.startswith("secretsmanager:") for a in actions) and (actions, resources) != (["secretsmanager:GetSecretValue"], [secret_arn]):
                return f"{st['Sid']}: {actions} on {resources}"
            if any(a.startswith("acm-pca:") for a in actions) and resources != [ca_arn]:
                return f"{st['Sid']}: {actions} on {resources}"
            if any(a.startswith("kms:") for a in actions) and (actions, resources) != (["kms:Decrypt"], [key_arn]):
                return f"{st['Sid']}: {actions} on {resources}"

    check("IAM role policy strata-security: GetSecretValue on the admin secret only, certificates from the cluster CA only", security_policy)

    def private_ca():
        ca = pca.describe_certificate_authority(CertificateAuthorityArn=ca_arn)["CertificateAuthority"]
        if ca["Type"] != "ROOT" or ca["Status"] != "ACTIVE":
            return f"{ca['Type']} {ca['Status']}"
        pem = pca.get_certificate_authority_certificate(CertificateAuthorityArn=ca_arn)["Certificate"]
        if pem.strip() != out["ca_certificate_pem"].strip():
            return "ca_certificate_pem differs from the CA's certificate"

    check("private CA: an active root, its certificate is the ca_certificate_pem output", private_ca)

    def client_properties():
        props = out["client_properties"]
        for needle in ("security.protocol=SASL_SSL\n", "sasl.mechanism=SCRAM-SHA-512\n", f"--secret-id {secret_arn} ", f"bootstrap.servers={out['bootstrap_servers']}\n"):
            if needle not in props:
                return f"client_properties lacks {needle!r}"

    check("client_properties: bootstrap, SASL_SSL, SCRAM-SHA-512, where the secret is", client_properties)


def absent_security(sec):
    def secret_deleted():
        try:
            d = sec["sm"].describe_secret(SecretId=sec["secret_arn"])
        except ClientError as e:
            return None if e.response["Error"]["Code"] == "ResourceNotFoundException" else str(e)
        return None if d.get("DeletedDate") else "not scheduled for deletion"

    check("admin secret deleted (or scheduled for deletion)", secret_deleted)

    def ca_deleted():
        try:
            ca = sec["pca"].describe_certificate_authority(CertificateAuthorityArn=sec["ca_arn"])["CertificateAuthority"]
        except ClientError as e:
            return None if e.response["Error"]["Code"] == "ResourceNotFoundException" else str(e)
        return None if ca["Status"] == "DELETED" else f"status {ca['Status']}"

    check("private CA deleted", ca_deleted)


def absent(s3, iam, ec2, elb, kms, bucket, role, lt_ids, instance_ids, nlb_arn, key_arn):
    def gone(call, codes):
        try:
            call()
        except ClientError as e:
            if e.response["Error"]["Code"] in codes:
                return None
            raise
        return "still there"

    check("bucket deleted", lambda: gone(lambda: s3.head_bucket(Bucket=bucket), {"404", "NoSuchBucket", "NotFound"}))
    check("IAM role deleted", lambda: gone(lambda: iam.get_role(RoleName=role), {"NoSuchEntity"}))

    def lts_gone():
        left = [lt["LaunchTemplateId"] for lt in ec2.describe_launch_templates()["LaunchTemplates"] if lt["LaunchTemplateId"] in lt_ids]
        return f"left: {left}" if left else None

    check("launch templates deleted", lts_gone)

    def instances_gone():
        res = ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
        states = [i["State"]["Name"] for r in res for i in r["Instances"]]
        return None if all(s == "terminated" for s in states) else f"states {states}"

    check("instances terminated", instances_gone)

    def volumes_gone():
        vols = ec2.describe_volumes(Filters=[{"Name": "tag:strata:cluster", "Values": ["strata-demo"]}])["Volumes"]
        return f"left: {[v['VolumeId'] for v in vols]}" if vols else None

    check("data volumes deleted", volumes_gone)
    check("NLB deleted", lambda: gone(lambda: elb.describe_load_balancers(LoadBalancerArns=[nlb_arn]), {"LoadBalancerNotFound"}))

    def key_pending_deletion():
        state = kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"]
        return None if state == "PendingDeletion" else f"state {state}"

    check("KMS key scheduled for deletion", key_pending_deletion)


if __name__ == "__main__":
    main()
