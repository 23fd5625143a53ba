"""The fake Panther tenant behind the simulator: its detections, saved queries and alert flavours.

The first rule, scheduled rule, policy and query are the example objects of shared/api/examples/
verbatim, so golden tests and the simulator agree. The rest are modelled on Panther's managed
detection packs (AWS, Okta, GitHub, Slack). `FLAVORS` turns a detection into realistic alert titles
and `context` payloads; it is kept apart from the catalog objects because Panther serves neither.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]

PANTHER_SYSTEM = {"id": "panther", "type": "system"}
ANALYST = {"id": "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6", "type": "user"}


def _detection(
    id: str, name: str, severity: str, description: str, own: JSON, *, body: str | None,
    created: str, modified: str, by: JSON | None = PANTHER_SYSTEM, managed: bool = True,
) -> JSON:
    """A detection as Panther serves it, keys in its order: what every kind has around the
    fields of its own kind (`own`). Enabled, without outputs or tests, like most of a tenant's.
    Without a `body` or a creator (`by`), those keys are absent, as in shared/api/examples/."""
    return {
        "id": id, "displayName": name, "description": description, "enabled": True,
        "severity": severity, **own, "outputIDs": [], "tests": [], "managed": managed,
        **({} if body is None else {"body": body}), "createdAt": created,
        **({} if by is None else {"createdBy": by, "createdByExternal": ""}),
        "lastModified": modified,
    }


def _rule(
    id: str, name: str, severity: str, description: str, *, log_types: list[str],
    tags: list[str], runbook: str, reference: str, reports: JSON, summary: list[str],
    dedup: int = 60, threshold: int = 1, **common: Any,
) -> JSON:
    own = {
        "logTypes": log_types, "tags": tags, "runbook": runbook, "reference": reference,
        "reports": reports, "dedupPeriodMinutes": dedup, "threshold": threshold,
        "summaryAttributes": summary, "inlineFilters": None,
    }
    return _detection(id, name, severity, description, own, body="def rule(event): ...", **common)


def _scheduled_rule(
    id: str, name: str, severity: str, description: str, *, queries: list[str],
    tags: list[str], runbook: str, reports: JSON, reference: str | None = None,
    summary: list[str] | None = None, **common: Any,
) -> JSON:
    own = {
        "scheduledQueries": queries, "tags": tags, "runbook": runbook, "reference": reference,
        "reports": reports, "dedupPeriodMinutes": 60, "threshold": 1, "summaryAttributes": summary,
    }
    own = {key: value for key, value in own.items() if value is not None}
    return _detection(id, name, severity, description, own, **common)


def _policy(
    id: str, name: str, severity: str, description: str, *, resource_types: list[str],
    suppressions: list[str], tags: list[str], reports: JSON,
    body: str | None = "def policy(resource): ...", **common: Any,
) -> JSON:
    own = {"resourceTypes": resource_types, "suppressions": suppressions, "tags": tags,
           "reports": reports}
    return _detection(id, name, severity, description, own, body=body, **common)


# The first of each kind is its example in shared/api/examples/, to the letter (the golden tests
# compare them); the rest are modelled on Panther's managed packs.
RULES: list[JSON] = [
    _rule(
        "AWS.Console.LoginWithoutMFA", "AWS Console Login Without MFA", "HIGH",
        "A user logged into the AWS console without multi-factor authentication.",
        log_types=["AWS.CloudTrail"],
        tags=["AWS", "Identity & Access Management", "Initial Access:Valid Accounts"],
        runbook=(
            "Confirm with the user; if unexpected, disable the console password and rotate keys."
        ),
        reference="https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa.html",
        reports={"MITRE ATT&CK": ["TA0001:T1078", "TA0006:T1556"], "CIS": ["1.10"]},
        summary=["sourceIPAddress", "userIdentity:arn"],
        created="2025-02-11T10:00:00.000000000Z", modified="2026-10-02T09:30:12.123456789Z",
    ),
    _rule(
        "AWS.CloudTrail.RootActivity", "Root Account Activity", "CRITICAL",
        "The AWS root user performed an API call.",
        log_types=["AWS.CloudTrail"],
        tags=["AWS", "Identity & Access Management", "Privilege Escalation:Valid Accounts"],
        runbook="Root should never be used day to day: find who holds the credentials and why.",
        reference="https://docs.aws.amazon.com/IAM/latest/UserGuide/id_root-user.html",
        reports={"MITRE ATT&CK": ["TA0004:T1078"], "CIS": ["1.1"]},
        summary=["eventName", "sourceIPAddress"],
        created="2025-02-11T10:00:00.000000000Z", modified="2026-08-14T11:02:45.671220114Z",
    ),
    _rule(
        "Okta.AdminRoleAssigned", "Okta Admin Role Assigned", "HIGH",
        "A user was granted an Okta administrator role.",
        log_types=["Okta.SystemLog"], tags=["Okta", "Persistence:Account Manipulation"],
        runbook="Check the change ticket; revoke the role if nobody can vouch for it.",
        reference="https://help.okta.com/en-us/content/topics/security/administrators-admin-comparison.htm",
        reports={"MITRE ATT&CK": ["TA0003:T1098"]},
        summary=["actor:alternateId", "client:ipAddress"],
        created="2025-03-02T08:15:00Z", modified="2026-07-01T16:40:03.5Z",
    ),
    _rule(
        "Okta.BruteForceLogins", "Okta Brute Force Logins", "MEDIUM",
        "Many failed Okta sign-ins for one user from one address.",
        log_types=["Okta.SystemLog"], tags=["Okta", "Credential Access:Brute Force"],
        runbook="Block the source address at the edge and ask the user to reset their password.",
        reference="https://attack.mitre.org/techniques/T1110/",
        reports={"MITRE ATT&CK": ["TA0006:T1110"]}, dedup=15, threshold=5,
        summary=["client:ipAddress", "actor:alternateId"], managed=False, by=ANALYST,
        created="2025-05-19T13:20:00Z", modified="2026-03-08T10:11:12.000000001Z",
    ),
    _rule(
        "GitHub.Repo.MadePublic", "GitHub Repository Made Public", "MEDIUM",
        "A private repository of the organisation was made public.",
        log_types=["GitHub.Audit"], tags=["GitHub", "Exfiltration:Transfer Data to Cloud Account"],
        runbook="Ask the repository owner; switch it back to private unless it was intended.",
        reference="https://docs.github.com/en/repositories",
        reports={"MITRE ATT&CK": ["TA0010:T1537"]}, summary=["actor", "repo"],
        created="2025-02-11T10:00:00Z", modified="2026-05-22T07:45:30.250Z",
    ),
]

SCHEDULED_RULES: list[JSON] = [
    _scheduled_rule(
        "AWS.CloudTrail.UnusedRegion", "API Calls In Unused Region", "MEDIUM",
        "Activity in a region the organisation does not operate in.",
        queries=["CloudTrail Unused Regions (hourly)"],
        tags=["AWS", "Defense Evasion:Unused/Unsupported Cloud Regions"], runbook="",
        reports={"MITRE ATT&CK": ["TA0005:T1535"]}, body=None, by=None, managed=False,
        created="2025-06-01T00:00:00Z", modified="2026-09-15T12:00:00Z",
    ),
    _scheduled_rule(
        "Standard.ImpossibleTravel.Login", "Impossible Travel Login", "HIGH",
        "Two sign-ins by one user from places too far apart for the time between.",
        queries=["Impossible Travel Logins (15 min)"],
        tags=["Identity", "Initial Access:Valid Accounts"],
        runbook="Call the user on a known number; suspend the session if they did not travel.",
        reference="https://attack.mitre.org/techniques/T1078/",
        reports={"MITRE ATT&CK": ["TA0001:T1078"]}, summary=["user"],
        body="def rule(event): ...", by=ANALYST, managed=False,
        created="2025-07-09T09:00:00Z", modified="2026-10-30T18:22:09.004Z",
    ),
]

POLICIES: list[JSON] = [
    _policy(
        "AWS.S3.Bucket.PublicRead", "S3 Bucket Public Read", "CRITICAL",
        "The bucket's ACL or policy grants read access to everyone.",
        resource_types=["AWS.S3.Bucket"], suppressions=[],
        tags=["AWS", "Collection:Data from Cloud Storage Object"],
        reports={"MITRE ATT&CK": ["TA0009:T1530"]}, body=None, by=None,
        created="2025-02-11T10:00:00Z", modified="2026-01-20T08:00:00Z",
    ),
    _policy(
        "AWS.EC2.SecurityGroup.OpenSSH", "Security Group Allows SSH From Anywhere", "HIGH",
        "An EC2 security group allows inbound port 22 from 0.0.0.0/0.",
        resource_types=["AWS.EC2.SecurityGroup"], suppressions=["aws::ec2::sg-bastion*"],
        tags=["AWS", "Initial Access:External Remote Services"],
        reports={"MITRE ATT&CK": ["TA0001:T1133"], "CIS": ["5.2"]},
        created="2025-02-11T10:00:00Z", modified="2026-04-03T15:30:00.75Z",
    ),
    _policy(
        "AWS.KMS.CustomerManagedKey.RotationDisabled", "KMS Key Rotation Disabled", "LOW",
        "A customer-managed KMS key does not rotate its material yearly.",
        resource_types=["AWS.KMS.Key"], suppressions=[], tags=["AWS", "Security Control"],
        reports={"CIS": ["3.8"]}, created="2025-02-11T10:00:00Z", modified="2025-11-12T09:00:00Z",
    ),
]

# Simple rules (no example to follow) carry no Python `body`: their detection is YAML.
SIMPLE_RULES: list[JSON] = [
    _detection(
        "Slack.AuditLogs.AppAdded", "Slack App Added", "LOW",
        "A Slack app was installed in the workspace.",
        {
            "logTypes": ["Slack.AuditLogs"],
            "tags": ["Slack", "Persistence:Office Application Startup"],
            "runbook": "Check the app against the approved list; uninstall it if it is not there.",
            "reports": {"MITRE ATT&CK": ["TA0003:T1137"]},
            "dedupPeriodMinutes": 60,
            "threshold": 1,
            "detection": (
                "MatchFilters:\n  - Key: action\n    Condition: Equals\n    Value: app_installed\n"
            ),
            "alertTitle": "Slack app {{entity.app.name}} added",
            "alertContext": "",
            "dynamicSeverities": "",
            "groupBy": "",
            "inlineFilters": "",
            "summaryAttributes": ["actor:user:email"],
        },
        body=None, created="2025-09-01T12:00:00Z", modified="2026-02-17T14:05:59.123Z",
    ),
]

QUERIES: list[JSON] = [
    {
        "id": "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901",
        "name": "CloudTrail Unused Regions (hourly)",
        "description": "Regions with CloudTrail activity outside the approved list, last hour.",
        "sql": (
            "SELECT awsRegion, count(*) AS n FROM panther_logs.public.aws_cloudtrail "
            "WHERE p_occurs_since('1 hour') GROUP BY 1"
        ),
        "schedule": {"cron": "", "disabled": False, "rateMinutes": 60, "timeoutMinutes": 5},
        "managed": False,
        "createdAt": "2025-06-01T00:00:00Z",
        "updatedAt": "2026-09-15T12:00:00Z",
    },
    {
        "id": "6f0e9d8c-7b6a-4594-8372-61504f3e2d1c",
        "name": "Impossible Travel Logins (15 min)",
        "description": "Consecutive sign-ins per user whose implied speed exceeds 1000 km/h.",
        "sql": (
            "SELECT actor:alternateId AS user, client:geographicalContext AS geo, p_event_time "
            "FROM panther_logs.public.okta_systemlog WHERE p_occurs_since('15 minutes') "
            "AND eventType = 'user.session.start'"
        ),
        "schedule": {"cron": "*/15 * * * *", "disabled": False, "rateMinutes": 0,
                     "timeoutMinutes": 3},
        "managed": False,
        "createdAt": "2025-07-09T09:00:00Z",
        "updatedAt": "2026-10-30T18:20:41Z",
    },
    {
        "id": "a7b8c9d0-e1f2-4a3b-8c4d-5e6f7a8b9c0d",
        "name": "Failed Okta logins by IP (ad hoc)",
        "description": "Saved investigation query; not scheduled.",
        "sql": (
            "SELECT client:ipAddress AS ip, count(*) AS failures "
            "FROM panther_logs.public.okta_systemlog "
            "WHERE outcome:result = 'FAILURE' AND p_occurs_since('1 day') "
            "GROUP BY 1 ORDER BY 2 DESC"
        ),
        "schedule": {"cron": "", "disabled": True, "rateMinutes": 0, "timeoutMinutes": 0},
        "managed": False,
        "createdAt": "2026-01-04T10:30:00Z",
        "updatedAt": "2026-01-04T10:30:00Z",
    },
]

# What the simulator serves under GET /<kind>, in the order it registers the routes.
OBJECTS: dict[str, list[JSON]] = {
    "rules": RULES,
    "scheduled-rules": SCHEDULED_RULES,
    "policies": POLICIES,
    "simple-rules": SIMPLE_RULES,
    "queries": QUERIES,
}

# --- alert flavours -------------------------------------------------------------------------
# Each returns (title, context) for one alert of its detection; drawn from the simulator's seeded
# Random so that a seed reproduces the same alerts.

USERS = ["ops-admin", "jdoe", "asmith", "mgarcia", "li.wei", "svc-deploy", "k.nakamura", "pmartin"]
ANALYSTS = [
    ANALYST["id"],
    "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "16fd2706-8baf-433b-82eb-8c7fada847da",
]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]
UNUSED_REGIONS = ["ap-southeast-3", "me-south-1", "af-south-1", "sa-east-1", "ap-east-1"]
ACCOUNTS = ["123456789012", "210987654321", "555566667777"]
CITIES = [("Paris", "FR"), ("Lagos", "NG"), ("Sydney", "AU"), ("Toronto", "CA"),
          ("Singapore", "SG"), ("Sao Paulo", "BR"), ("Frankfurt", "DE")]

Flavor = Callable[[random.Random], tuple[str, JSON | None]]


def _ip(rng: random.Random) -> str:
    """Documentation address ranges (RFC 5737): realistic-looking, never anyone's real host."""
    prefix = rng.choice(["203.0.113", "198.51.100", "192.0.2"])
    return f"{prefix}.{rng.randint(1, 254)}"


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _console_login(rng: random.Random) -> tuple[str, JSON | None]:
    user, ip = rng.choice(USERS), _ip(rng)
    account = rng.choice(ACCOUNTS)
    return f"Console login without MFA by {user} from {ip}", {
        "sourceIPAddress": ip,
        "userIdentity": {
            "type": "IAMUser",
            "userName": user,
            "arn": f"arn:aws:iam::{account}:user/{user}",
        },
        "awsRegion": rng.choice(REGIONS),
        "mfaUsed": "No",
    }


def _root_activity(rng: random.Random) -> tuple[str, JSON | None]:
    event = rng.choice(["ConsoleLogin", "CreateAccessKey", "PutBucketPolicy", "DeleteTrail"])
    ip = _ip(rng)
    return f"Root account activity: {event} from {ip}", {
        "eventName": event,
        "sourceIPAddress": ip,
        "recipientAccountId": rng.choice(ACCOUNTS),
        "userAgent": rng.choice(["aws-cli/2.15.30", "console.amazonaws.com", "Boto3/1.34.69"]),
        "userIdentity": {"type": "Root", "principalId": rng.choice(ACCOUNTS)},
    }


def _okta_admin(rng: random.Random) -> tuple[str, JSON | None]:
    actor, target = rng.sample(USERS, 2)
    role = rng.choice(["SUPER_ADMIN", "ORG_ADMIN", "APP_ADMIN", "HELP_DESK_ADMIN"])
    city, country = rng.choice(CITIES)
    return f"Okta admin role {role} assigned to {target} by {actor}", {
        "actor": {"alternateId": f"{actor}@acme.example", "type": "User"},
        "target": [{"alternateId": f"{target}@acme.example", "type": "User", "role": role}],
        "client": {
            "ipAddress": _ip(rng),
            "geographicalContext": {"city": city, "country": country},
        },
    }


def _okta_bruteforce(rng: random.Random) -> tuple[str, JSON | None]:
    user, ip = rng.choice(USERS), _ip(rng)
    return f"Brute force logins for {user}@acme.example from {ip}", {
        "ip": ip,
        "user": f"{user}@acme.example",
        "failedAttempts": rng.randint(5, 60),
        "outcome": {"result": "FAILURE", "reason": "INVALID_CREDENTIALS"},
    }


def _github_public(rng: random.Random) -> tuple[str, JSON | None]:
    repo = rng.choice(["billing-api", "infra-terraform", "ml-experiments", "docs-internal"])
    actor = rng.choice(USERS)
    return f"Repository acme/{repo} made public by {actor}", {
        "org": "acme",
        "repo": f"acme/{repo}",
        "actor": actor,
        "visibility": {"from": "private", "to": "public"},
    }


def _unused_region(rng: random.Random) -> tuple[str, JSON | None]:
    region = rng.choice(UNUSED_REGIONS)
    return f"API calls from an unused region ({region})", {
        "region": region,
        "accounts": sorted(rng.sample(ACCOUNTS, rng.randint(1, 2))),
    }


def _impossible_travel(rng: random.Random) -> tuple[str, JSON | None]:
    user = rng.choice(USERS)
    (city_a, country_a), (city_b, country_b) = rng.sample(CITIES, 2)
    return f"Impossible travel for {user}: {city_a} to {city_b}", {
        "user": f"{user}@acme.example",
        "locations": [
            {"city": city_a, "country": country_a, "ip": _ip(rng)},
            {"city": city_b, "country": country_b, "ip": _ip(rng)},
        ],
        "speedKmh": rng.randint(1200, 9000),
    }


def _s3_public(rng: random.Random) -> tuple[str, JSON | None]:
    bucket = rng.choice(["acme-public-assets", "acme-exports", "acme-logs-archive", "tmp-share"])
    context = {
        "resourceId": f"arn:aws:s3:::{bucket}",
        "accountId": rng.choice(ACCOUNTS),
        "region": rng.choice(REGIONS),
    }
    # Policy alerts often carry no context at all (shared/api/examples/panther-alert-policy.json).
    return f"S3 bucket {bucket} allows public read", context if rng.random() < 0.5 else None


def _open_ssh(rng: random.Random) -> tuple[str, JSON | None]:
    group = f"sg-{rng.getrandbits(68):017x}"
    return f"Security group {group} allows SSH from 0.0.0.0/0", {
        "resourceId": group,
        "vpcId": f"vpc-{rng.getrandbits(32):08x}",
        "region": rng.choice(REGIONS),
        "ipPermissions": [{"fromPort": 22, "toPort": 22, "ipRanges": ["0.0.0.0/0"]}],
    }


def _kms_rotation(rng: random.Random) -> tuple[str, JSON | None]:
    key = random_uuid(rng)
    context = {"keyId": key, "accountId": rng.choice(ACCOUNTS), "keyRotationEnabled": False}
    return f"KMS key {key} has rotation disabled", context if rng.random() < 0.6 else None


def _slack_app(rng: random.Random) -> tuple[str, JSON | None]:
    app = rng.choice(["Giphy", "Polly", "Zapier", "Google Drive", "Unknown Bot"])
    user = rng.choice(USERS)
    return f"Slack app {app} added", {
        "action": "app_installed",
        "entity": {"app": {"name": app, "is_distributed": rng.random() < 0.5}},
        "actor": {"user": {"email": f"{user}@acme.example", "name": user}},
    }


FLAVORS: dict[str, Flavor] = {
    "AWS.Console.LoginWithoutMFA": _console_login,
    "AWS.CloudTrail.RootActivity": _root_activity,
    "Okta.AdminRoleAssigned": _okta_admin,
    "Okta.BruteForceLogins": _okta_bruteforce,
    "GitHub.Repo.MadePublic": _github_public,
    "AWS.CloudTrail.UnusedRegion": _unused_region,
    "Standard.ImpossibleTravel.Login": _impossible_travel,
    "AWS.S3.Bucket.PublicRead": _s3_public,
    "AWS.EC2.SecurityGroup.OpenSSH": _open_ssh,
    "AWS.KMS.CustomerManagedKey.RotationDisabled": _kms_rotation,
    "Slack.AuditLogs.AppAdded": _slack_app,
}


def generic_flavor(detection: JSON) -> Flavor:
    """For detections added at runtime: the display name plus an entity, like most real titles."""
    name = detection.get("displayName") or detection.get("id") or "Unnamed detection"

    def flavor(rng: random.Random) -> tuple[str, JSON | None]:
        user, ip = rng.choice(USERS), _ip(rng)
        return f"{name}: {user} from {ip}", {"user": user, "sourceIp": ip}

    return flavor


DETECTION_ERRORS = [
    "KeyError('requestParameters')",
    "AttributeError(\"'NoneType' object has no attribute 'get'\")",
    "TypeError('string indices must be integers')",
    "TimeoutError('rule execution exceeded 3s')",
]

SYSTEM_ERRORS: list[tuple[str, str, str]] = [
    # (title template, source type, system error type)
    ("Log source {name} has not sent data for {hours} hours", "aws-s3", "SOURCE_NO_DATA"),
    ("Log source {name} failed to assume its IAM role", "aws-s3", "SOURCE_CLASSIFICATION_FAILURES"),
    ("Destination {name} failed to deliver alerts", "slack", "OUTPUT_DELIVERY_FAILURE"),
]
SOURCE_NAMES = ["cloudtrail-prod", "okta-systemlog", "github-audit", "vpc-flow-eu", "soc-slack"]


# --- detection-list filters (GET /rules, /policies, /scheduled-rules, /simple-rules) -------------

# The filters panther-openapi.yaml names for each listing; `compliance-status`, `created-by`,
# `last-modified-by` and `include-python` are accepted and ignored (the catalog has no such data).
LIST_FILTERS: dict[str, tuple[str, ...]] = {
    "rules": ("name-contains", "state", "log-type", "severity", "tag"),
    "simple-rules": ("name-contains", "state", "log-type", "severity", "tag"),
    "scheduled-rules": ("name-contains", "state", "scheduled-query", "severity", "tag"),
    "policies": ("name-contains", "state", "resource-type", "severity", "tag"),
    "queries": (),
}
_SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_ARRAY_FIELDS = {
    "log-type": "logTypes",
    "resource-type": "resourceTypes",
    "scheduled-query": "scheduledQueries",
    "tag": "tags",
}


def detection_filters(kind: str, params: Any) -> dict[str, Any]:
    """The filters of one listing request, as JSON (they travel in the cursor); ValueError
    with Panther's wording for a value outside the spec's enum."""
    filters: dict[str, Any] = {}
    for name in LIST_FILTERS.get(kind, ()):
        if name in ("name-contains", "state"):
            value = params.get(name) or None
            if name == "state" and value is not None and value not in ("enabled", "disabled"):
                raise ValueError(
                    f"invalid value for state: {value!r} must be one of enabled, disabled"
                )
            if value is not None:
                filters[name] = value
            continue
        values = [v for v in params.getall(name, []) if v]
        if name == "severity":
            for value in values:
                if value not in _SEVERITIES:
                    raise ValueError(
                        f"invalid value for severity: {value!r} must be one of "
                        f"{', '.join(_SEVERITIES)}"
                    )
        if values:
            filters[name] = values
    return filters


def detection_matches(obj: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Every given filter holds; an array filter matches when any of its values does."""
    text = filters.get("name-contains")
    if text is not None:
        name = f"{obj.get('displayName') or ''} {obj.get('id') or ''}".lower()
        if text.lower() not in name:
            return False
    state = filters.get("state")
    if state is not None and bool(obj.get("enabled")) != (state == "enabled"):
        return False
    severities = filters.get("severity")
    if severities and obj.get("severity") not in severities:
        return False
    for name, field in _ARRAY_FIELDS.items():
        wanted = filters.get(name)
        if wanted:
            have = {str(v).lower() for v in obj.get(field) or ()}
            if not have & {w.lower() for w in wanted}:
                return False
    return True


# --- raw events behind an alert (GET /alerts/{id}/events) -----------------------------------------


def alert_events(alert: dict[str, Any], log_types: tuple[str, ...]) -> list[dict[str, Any]]:
    """The raw log events of an alert: `eventCount` of them (at most 200), the same on every call.

    Shaped like Panther's normalized events: the log's own fields plus the `p_` standard fields
    (`p_event_time`, `p_log_type`, `p_row_id`, `p_parse_time`, `p_source_label`).
    """
    rng = random.Random(f"events-{alert.get('id')}")
    count = min(int(alert.get("eventCount") or 1), 200)
    log_type = log_types[0] if log_types else "AWS.CloudTrail"
    first = alert.get("firstEventOccurredAt") or alert.get("createdAt") or "2026-01-01T00:00:00Z"
    events = []
    for index in range(count):
        events.append(
            {
                "eventName": rng.choice(("ConsoleLogin", "AssumeRole", "GetObject", "PutObject")),
                "sourceIPAddress": f"203.0.113.{rng.randint(1, 254)}",
                "userIdentity": {"type": "IAMUser", "userName": rng.choice(("alice", "bob"))},
                "p_event_time": first,
                "p_log_type": log_type,
                "p_row_id": f"{rng.getrandbits(96):024x}{index:04x}",
                "p_parse_time": first,
                "p_source_label": "sim-source",
            }
        )
    return events
