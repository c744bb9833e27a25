"""The Python client's models held against the server's OpenAPI description: every model the
client returns is one of the server's wire models (enomalism/wire.py) exactly as the server
describes it, and each view the client makes of a whole answer takes its fields from that
answer's schema. A field added, renamed or retyped on one side only fails here."""

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from enomalism import client, wire
from enomalism.api.app import create_app
from enomalism.config import Settings

REF = "#/components/schemas/{model}"
IGNORED = ("description", "title", "default")

# The client's views of whole answers: (view, the answer's schema, view field -> answer key).
VIEWS: list[tuple[type[BaseModel], str, dict[str, str]]] = [
    (client.MachineDetails, "MachineAnswer",
     {"machine": "machine_obj", "info": "info", "hypervisors": "hypervisors"}),
    (client.HostRegistration, "HostAnswer",
     {"machine": "machine_obj", "hypervisors": "hypervisors", "message": "message"}),
    (client.NewToken, "TokenAnswer", {"token": "token", "secret": "secret"}),
    (client.Queued, "ProvisionAnswer",
     {"txid": "txid", "machine": "newuuid", "hypervisor": "hvmuuid", "message": "message"}),
]


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"), hypervisors=[]))
    return app.openapi()["components"]["schemas"]


def client_models() -> dict[str, type[BaseModel]]:
    """The models `enomalism.client` offers, by the name the client gives them."""
    return {name: obj for name, obj in vars(client).items()
            if isinstance(obj, type) and issubclass(obj, BaseModel)
            and obj is not wire.WireModel}


def wire_base(model: type[BaseModel]) -> type[BaseModel] | None:
    """The wire model `model` is, or adds behaviour (not fields) to."""
    return next((c for c in model.__mro__ if c.__module__ == wire.__name__
                 and c is not wire.WireModel and issubclass(c, BaseModel)), None)


def shape(schema: Any) -> Any:
    """What a schema says about the data: descriptions, titles and defaults left out (FastAPI
    does not write a default of null)."""
    if isinstance(schema, dict):
        return {k: shape(v) for k, v in schema.items() if k not in IGNORED}
    if isinstance(schema, list):
        return [shape(v) for v in schema]
    return schema


def drift(model: type[BaseModel], components: dict[str, Any]) -> list[str]:
    """How a wire model differs from the server's description of the same name."""
    served = components.get(model.__name__)
    if served is None:
        return [f"{model.__name__} is not in the server's OpenAPI description"]
    own = model.model_json_schema(ref_template=REF, mode="serialization")
    own.pop("$defs", None)
    if shape(own) == shape(served):
        return []
    keys = set(own.get("properties", {})) ^ set(served.get("properties", {}))
    return [f"{model.__name__} differs from the server's (fields only on one side: "
            f"{sorted(keys)})"]


def test_every_client_model_is_a_served_wire_model(components):
    views = {v for v, _, _ in VIEWS}
    problems = []
    for name, model in client_models().items():
        if model in views:
            continue
        base = wire_base(model)
        if base is None:
            problems.append(f"client.{name} is not one of enomalism.wire's models")
            continue
        if set(model.model_fields) != set(base.model_fields):
            problems.append(f"client.{name} adds fields to {base.__name__}")
        if base.__name__ in components:
            problems += drift(base, components)
        else:  # a shape the server serves inside an answer (with its errno and message)
            answers = [s for s in base.__subclasses__() if s.__name__ in components]
            assert answers, f"no answer of the server is made of {base.__name__}"
            missing = set(base.model_fields) - set(components[answers[0].__name__]["properties"])
            if missing:
                problems.append(f"{answers[0].__name__} lacks {sorted(missing)}")
    assert problems == []
    # and the client offers every wire model the server serves
    offered = {wire_base(m) for m in client_models().values()}
    served = {m for m in vars(wire).values() if isinstance(m, type) and issubclass(m, BaseModel)
              and m.__module__ == wire.__name__ and m is not wire.WireModel}
    assert served - offered == set()


@pytest.mark.parametrize(("view", "answer", "keys"), VIEWS, ids=[v.__name__ for v, _, _ in VIEWS])
def test_client_views_take_their_fields_from_the_answers(components, view, answer, keys):
    assert set(view.model_fields) == set(keys), "every field of the view is mapped"
    own = view.model_json_schema(ref_template=REF, mode="serialization")["properties"]
    served = components[answer]["properties"]
    for field, key in keys.items():
        assert key in served, f"{answer} has no '{key}' (the client's {view.__name__}.{field})"
        assert shape(own[field]) == shape(served[key]), \
            f"{view.__name__}.{field} is typed unlike {answer}.{key}"


def test_a_drifted_model_is_caught(components):
    class MachineObj(wire.MachineObj):  # the server's name, a field of its own
        colour: str = "blue"

    class HypervisorObj(wire.WireModel):  # the server's name, a field short
        uuid: str

    assert drift(wire.MachineObj, components) == []
    assert drift(MachineObj, components) == [
        "MachineObj differs from the server's (fields only on one side: ['colour'])"]
    assert "HypervisorObj differs" in drift(HypervisorObj, components)[0]


def test_the_client_loads_no_part_of_the_server():
    """The client (and the wire models) import pydantic and httpx, never the server's app,
    services, store or libvirt: a script that drives a server need not install one."""
    probe = ("import sys, enomalism.client; print(' '.join(sorted(m for m in sys.modules if "
             "m.split('.')[0] in ('fastapi', 'sqlalchemy', 'libvirt', 'starlette') or "
             "m.startswith(('enomalism.api', 'enomalism.services', 'enomalism.store')))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.split() == []
