"""The Kubernetes manifests of the at-scale mode (``deploy/kubernetes``) against the schemas
of Kubernetes and against the code they deploy, offline (no cluster, kubectl or kubeconform
here): every object is checked, strictly, against the OpenAPI schemas of the Kubernetes
releases that kubernetes-validate ships; each role has its Deployment running a command the
CLI takes; every variable a container gets is a setting, with a value the settings take;
probes ask routes the API answers; ports, selectors and the image agree with the settings,
the pod labels, docker-compose.yml and the Dockerfile."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import typer.main
import yaml
from kubernetes_validate.utils import all_versions, major_minor

from api.app import create_app
from cli.main import cli
from engine.runtime.composition import ALL_ROLES, KAFKA_GROUPS, Engine, Role
from engine.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = FOLDER / "kustomization.yaml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SECRET = "sendstream-secrets"  # made by the operator (README), never kept in the repository
# Settings that carry a password or a key: from the Secret only, never in the ConfigMap.
SECRET_SETTINGS = frozenset({"SESSION_SECRET", "EVENTSTORE_URL", "CLICKHOUSE_URL",
                             "SMTP_RELAY_URL"})  # fmt: skip
OPTIONAL_SECRETS = frozenset({"SMTP_RELAY_URL"})  # unset: the sandbox
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 (a pod's servers are reached from other pods)
# Every Kubernetes release whose schemas the installed kubernetes-validate ships.
SCHEMA_VERSIONS = sorted({major_minor(version) for version in all_versions()})
# What kustomize reads at the top of a kustomization (kustomize.config.k8s.io/v1beta1).
KUSTOMIZATION_FIELDS = frozenset({
    "apiVersion", "kind", "resources", "images", "labels", "commonAnnotations", "namespace",
    "namePrefix", "nameSuffix", "patches", "configMapGenerator", "secretGenerator",
    "generatorOptions", "replicas", "components",
})  # fmt: skip

Manifest = dict[str, Any]


def _resources() -> list[str]:
    kustomization: Manifest = yaml.safe_load(KUSTOMIZATION.read_text())
    resources: list[str] = kustomization["resources"]
    return resources


@pytest.fixture(scope="module")
def objects() -> list[tuple[str, Manifest]]:
    """Every object of every file the kustomization lists, with its file's name."""
    found = [
        (name, document)
        for name in _resources()
        for document in yaml.safe_load_all((FOLDER / name).read_text())
        if document is not None
    ]
    assert found
    return found


def _of_kind(objects: list[tuple[str, Manifest]], kind: str) -> dict[str, Manifest]:
    return {obj["metadata"]["name"]: obj for _, obj in objects if obj["kind"] == kind}


@pytest.fixture(scope="module")
def deployments(objects: list[tuple[str, Manifest]]) -> dict[str, Manifest]:
    found = _of_kind(objects, "Deployment")
    assert found
    return found


@pytest.fixture(scope="module")
def config_maps(objects: list[tuple[str, Manifest]]) -> dict[str, dict[str, str]]:
    return {name: obj.get("data", {}) for name, obj in _of_kind(objects, "ConfigMap").items()}


def _pod(deployment: Manifest) -> Manifest:
    pod: Manifest = deployment["spec"]["template"]["spec"]
    return pod


def _container(deployment: Manifest) -> Manifest:
    containers = _pod(deployment)["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    container: Manifest = containers[0]
    return container


def _serve_options(command: list[str]) -> dict[str, Any]:
    """The options of ``sendstream serve …`` as the CLI itself parses them (an unknown
    option or role fails here as it would in the container)."""
    assert command[:2] == ["sendstream", "serve"], command
    serve = typer.main.get_command(cli).commands["serve"]  # type: ignore[attr-defined]
    params: dict[str, Any] = serve.make_context("serve", list(command[2:])).params
    return params


def _roles(deployment: Manifest) -> set[Role]:
    return {Role(str(role)) for role in _serve_options(_container(deployment)["command"])["role"]}


def _environment(container: Manifest, config_maps: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Every variable the container gets: a literal value, or the secretKeyRef it is read
    from (the ConfigMaps of ``envFrom`` first, ``env`` over them, as Kubernetes does)."""
    environment: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        # A secretRef here would hide the names it sets from these checks.
        assert set(source) == {"configMapRef"}, source
        environment.update(config_maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            environment[variable["name"]] = variable["valueFrom"]["secretKeyRef"]
    return environment


def _settings(environment: dict[str, Any]) -> Settings:
    """The settings a container starts with (its secrets aside: the operator gives them)."""
    values = {name: value for name, value in environment.items() if isinstance(value, str)}
    return Settings.model_validate(values)  # raises for a value no setting takes


def _quantity(text: str | int) -> float:
    """A Kubernetes quantity (``250m``, ``1``, ``512Mi``, ``1G``) as a number."""
    found = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(text))
    assert found, text
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip
    return float(found.group(1)) * scale[found.group(2)]


def _compose() -> Manifest:
    compose: Manifest = yaml.safe_load(COMPOSE.read_text())
    return compose


def _dockerfile_env(name: str) -> str:
    found = re.search(rf"^ENV {name}=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert found, f"the Dockerfile sets no {name}"
    return found.group(1)


def test_the_kustomization_lists_every_file_of_the_folder() -> None:
    kustomization: Manifest = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) <= KUSTOMIZATION_FIELDS, set(kustomization) - KUSTOMIZATION_FIELDS
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), "a file listed twice"
    files = {path.name for path in FOLDER.iterdir() if path.name != KUSTOMIZATION.name}
    assert set(resources) == files, (sorted(files - set(resources)), sorted(set(resources) - files))
    assert all(name.endswith(".yaml") for name in resources)


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(
    objects: list[tuple[str, Manifest]], version: str
) -> None:
    """Strict: a field Kubernetes does not know (a typo) fails too, as kubeconform -strict."""
    problems = []
    for name, obj in objects:
        where = f"{name}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{where}: {error.message}")
    assert not problems, "\n".join(problems)


def test_names_are_unique_and_no_secret_is_kept(objects: list[tuple[str, Manifest]]) -> None:
    keys = [(obj["kind"], obj["metadata"]["name"]) for _, obj in objects]
    assert len(keys) == len(set(keys)), keys
    assert "Secret" not in {kind for kind, _ in keys}, "secrets are made by the operator"
    assert all("namespace" not in obj["metadata"] for _, obj in objects), "kubectl -n chooses"


def test_one_deployment_per_role_running_a_real_command(deployments: dict[str, Manifest]) -> None:
    roles_run: set[Role] = set()
    for name, deployment in deployments.items():
        roles = _roles(deployment)
        assert len(roles) == 1, f"{name}: at scale each role is a Deployment of its own"
        (role,) = roles
        assert name == f"sendstream-{role.value}", name
        assert deployment["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"
        ] == role.value  # fmt: skip
        assert role not in roles_run, f"two Deployments run {role.value}"
        roles_run.add(role)
    assert roles_run == set(ALL_ROLES)


def test_every_variable_is_a_setting_and_every_value_one_it_takes(
    deployments: dict[str, Manifest], config_maps: dict[str, dict[str, str]]
) -> None:
    aliases = {str(field.alias) for field in Settings.model_fields.values() if field.alias}
    aliases.add("SESSION_SECRET")  # read from the environment by engine/keys.py
    for name, data in config_maps.items():
        assert set(data) <= aliases, f"{name} sets what no setting reads: {set(data) - aliases}"
        assert not set(data) & SECRET_SETTINGS, f"{name} holds a secret"
        assert all(isinstance(value, str) for value in data.values()), name  # as Kubernetes
    for name, deployment in deployments.items():
        environment = _environment(_container(deployment), config_maps)
        unknown = set(environment) - aliases
        assert not unknown, f"{name} sets what no setting reads: {sorted(unknown)}"
        for variable, value in environment.items():
            if variable in SECRET_SETTINGS:
                assert isinstance(value, dict), f"{name}: {variable} given in the clear"
                assert value["name"] == SECRET and value["key"] == variable, (name, value)
                assert value.get("optional", False) == (variable in OPTIONAL_SECRETS), value
            else:
                assert isinstance(value, str), f"{name}: {variable} read from a secret"
        missing = SECRET_SETTINGS - set(environment)
        assert not missing, f"{name} lacks {sorted(missing)}"
        _settings(environment)


def test_each_role_gets_what_compose_gives_it(
    deployments: dict[str, Manifest], config_maps: dict[str, dict[str, str]]
) -> None:
    by_role = {role: d for d in deployments.values() for role in _roles(d)}
    for name, service in _compose()["services"].items():
        command = service.get("command", [""])
        if command[0] != "sendstream":
            continue
        for role in _serve_options(command)["role"]:
            environment = _environment(_container(by_role[Role(str(role))]), config_maps)
            missing = set(service.get("environment", {})) - set(environment)
            assert not missing, f"compose's {name} sets {sorted(missing)}, Kubernetes does not"


async def test_the_api_probes_and_scrapes_routes_the_api_answers(
    deployments: dict[str, Manifest], tmp_path_factory: pytest.TempPathFactory
) -> None:
    api = deployments["sendstream-api"]
    container = _container(api)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    probes = ("startupProbe", "readinessProbe", "livenessProbe")
    paths = {container[probe]["httpGet"]["path"] for probe in probes if probe in container}
    paths.add(api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"])
    engine = Engine(
        Settings(SENDSTREAM_DATA_DIR=tmp_path_factory.mktemp("kubernetes"),
                 EVENTSTORE_URL="", KAFKA_BOOTSTRAP_SERVERS="", CLICKHOUSE_URL="",
                 SMTP_RELAY_URL="", SMTP_SUBMISSION_PORTS="", BOUNCE_SMTP_PORTS="",
                 INBOUND_SMTP_PORTS=""),
        roles=frozenset(),
    )  # fmt: skip
    try:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            for path in sorted(paths):
                answer = await http.get(path)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
    finally:
        engine.close()


def test_ports_are_the_ones_the_settings_and_the_command_open(
    deployments: dict[str, Manifest], config_maps: dict[str, dict[str, str]]
) -> None:
    for name, deployment in deployments.items():
        container = _container(deployment)
        settings = _settings(_environment(container, config_maps))
        options = _serve_options(container["command"])
        ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        roles = _roles(deployment)
        if Role.API in roles:
            assert ports == {"http": options["port"]}, name
            assert options["host"] == ANY_ADDRESS, f"{name}: the API must listen beyond loopback"
            assert annotations["prometheus.io/port"] == str(options["port"]), name
            exposed = re.findall(r"^EXPOSE (\d+)", DOCKERFILE.read_text(), re.MULTILINE)
            assert str(options["port"]) in exposed, (name, exposed)
            continue
        assert settings.metrics_port is not None, f"{name}: METRICS_PORT unset, nothing to scrape"
        assert ports.pop("metrics", None) == settings.metrics_port, name
        assert annotations["prometheus.io/port"] == str(settings.metrics_port), name
        assert container["livenessProbe"]["httpGet"]["port"] == "metrics", name
        served: set[int] = set()
        if Role.SMTP in roles:
            served = {*settings.submission_ports, *settings.submission_tls_ports,
                      *settings.bounce_ports, *settings.inbound_ports}  # fmt: skip
            assert settings.smtp_submission_host == ANY_ADDRESS, f"{name} listens on loopback"
        assert set(ports.values()) == served, (name, ports, served)
        # Not root, and no NET_BIND_SERVICE: no port below 1024 can be bound.
        assert all(port >= 1024 for port in ports.values()), (name, ports)


def _selected(selector: dict[str, str], deployments: dict[str, Manifest]) -> list[Manifest]:
    return [
        deployment
        for deployment in deployments.values()
        if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    ]


def test_selectors_match_the_pods_they_mean(
    objects: list[tuple[str, Manifest]], deployments: dict[str, Manifest]
) -> None:
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert _selected(selector, deployments) == [deployment], f"{name} selects others' pods"
        for constraint in _pod(deployment).get("topologySpreadConstraints", []):
            assert constraint["labelSelector"]["matchLabels"] == selector, name
    for name, budget in _of_kind(objects, "PodDisruptionBudget").items():
        (deployment,) = _selected(budget["spec"]["selector"]["matchLabels"], deployments)
        assert deployment["spec"]["replicas"] > 1, f"{name} guards a single pod"
        assert budget["spec"].get("maxUnavailable", 0) >= 1, f"{name} would block every drain"
    guarded = {
        deployment["metadata"]["name"]
        for budget in _of_kind(objects, "PodDisruptionBudget").values()
        for deployment in _selected(budget["spec"]["selector"]["matchLabels"], deployments)
    }
    several = {name for name, d in deployments.items() if d["spec"]["replicas"] > 1}
    assert several == guarded, several ^ guarded


def test_services_lead_to_ports_the_pods_open(
    objects: list[tuple[str, Manifest]], deployments: dict[str, Manifest]
) -> None:
    services = _of_kind(objects, "Service")
    public: dict[str, list[tuple[str, int]]] = {}  # container port name → (service, port)
    for name, service in services.items():
        selected = _selected(service["spec"]["selector"], deployments)
        assert len(selected) == 1, f"{name} selects {len(selected)} Deployments"
        container_ports = {
            port["name"]: port["containerPort"] for port in _container(selected[0])["ports"]
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                assert target in container_ports, f"{name}: no container port named {target}"
                public.setdefault(target, []).append((name, port["port"]))
            else:
                assert target in container_ports.values(), f"{name}: nothing on port {target}"
    assert public["http"] == [("sendstream-api", 8000)]
    # What clients and other mail servers expect, as compose publishes it.
    assert public["submission"] == [("sendstream-smtp", 587)]
    assert public["bounce"] == [("sendstream-smtp", 25)]
    (inbound,) = public["inbound"]
    assert inbound[1] == 25, inbound
    assert inbound[0] != "sendstream-smtp", "the inbound MX needs an address of its own"


def test_replicas_of_the_consumer_groups_fit_the_partitions(
    deployments: dict[str, Manifest], config_maps: dict[str, dict[str, str]]
) -> None:
    grouped = {Role(group) for group in KAFKA_GROUPS if group in {role.value for role in Role}}
    assert grouped, "no role reads the stream in a consumer group"
    for name, deployment in deployments.items():
        if not _roles(deployment) & grouped:
            continue
        settings = _settings(_environment(_container(deployment), config_maps))
        assert settings.uses_kafka, f"{name}: at scale the stream is Kafka"
        replicas = deployment["spec"]["replicas"]
        assert 1 <= replicas <= settings.kafka_partitions, (name, replicas)


def test_the_image_is_the_one_compose_and_the_dockerfile_build(
    deployments: dict[str, Manifest],
) -> None:
    image = _compose()["x-sendstream"]["image"]
    assert _compose()["x-sendstream"]["build"] == "."  # the Dockerfile beside it
    for name, deployment in deployments.items():
        for container in _pod(deployment)["containers"]:
            assert container["image"] == image, name
    kustomization: Manifest = yaml.safe_load(KUSTOMIZATION.read_text())
    named = {entry["name"] for entry in kustomization.get("images", [])}
    assert named <= {image.split(":")[0]}, named
    scripts = re.search(r"\[project\.scripts\]\n(\w+) =", (ROOT / "pyproject.toml").read_text())
    assert scripts and scripts.group(1) == "sendstream", "the command the containers run"


def test_pods_run_unprivileged_within_limits(deployments: dict[str, Manifest]) -> None:
    data_dir = _dockerfile_env("SENDSTREAM_DATA_DIR")
    for name, deployment in deployments.items():
        pod = _pod(deployment)
        assert pod["automountServiceAccountToken"] is False, name
        # Kubernetes would set NAME_PORT=tcp://… for each Service of the namespace: a
        # Service named "metrics" or "direct-smtp" would then break a setting.
        assert pod["enableServiceLinks"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name  # the image has no USER
        container = _container(deployment)
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert context["readOnlyRootFilesystem"] is True, name
        mounted = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for path in (data_dir, "/tmp"):  # the data folder (metrics files) and temporary files
            assert path in mounted and "emptyDir" in volumes[mounted[path]], (name, path)
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            request, limit = resources["requests"][kind], resources["limits"][kind]
            assert 0 < _quantity(request) <= _quantity(limit), (name, kind, request, limit)


def _iterate(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _iterate(item)
    elif isinstance(value, list):
        for item in value:
            yield from _iterate(item)


def test_every_config_map_and_secret_named_is_the_one_meant(
    objects: list[tuple[str, Manifest]], config_maps: dict[str, dict[str, str]]
) -> None:
    for name, obj in objects:
        for value in _iterate(obj):
            if isinstance(value, dict) and "configMapRef" in value:
                assert value["configMapRef"]["name"] in config_maps, name
            if isinstance(value, dict) and "secretKeyRef" in value:
                assert value["secretKeyRef"]["name"] == SECRET, name
