"""The admin's replica assignment, a pure function."""

from __future__ import annotations

from gateway.cell.admin.assigner import ModelView, ServerView, assign

PATH = "sax_gateway.testing.TestLM"


def _server(
    address: str,
    *,
    wanted: frozenset[str] = frozenset(),
    loaded: frozenset[str] = frozenset(),
    paths: frozenset[str] = frozenset({PATH}),
) -> ServerView:
    return ServerView(
        address=address,
        servable_paths=paths,
        wanted=wanted,
        loaded=loaded,
    )


def test_fills_replicas_least_busy_first() -> None:
    servers = [_server("a:1", wanted=frozenset({"/sax/test/x"})), _server("b:1"), _server("c:1")]
    models = [
        ModelView(model_id="/sax/test/x", model_path=PATH, replicas=1),
        ModelView(model_id="/sax/test/y", model_path=PATH, replicas=2),
    ]
    plan = assign(servers, models, max_models_per_server=4)
    assert plan.unloads == ()
    assert plan.loads == (("b:1", "/sax/test/y"), ("c:1", "/sax/test/y"))


def test_only_servers_that_can_serve_the_path() -> None:
    servers = [_server("a:1", paths=frozenset({"other"})), _server("b:1")]
    plan = assign(
        servers,
        [ModelView(model_id="/sax/test/x", model_path=PATH, replicas=2)],
        max_models_per_server=4,
    )
    assert plan.loads == (("b:1", "/sax/test/x"),)


def test_surplus_unloads_not_yet_loaded_replicas_first() -> None:
    servers = [
        _server("a:1", wanted=frozenset({"/sax/test/x"})),
        _server("b:1", wanted=frozenset({"/sax/test/x"}), loaded=frozenset({"/sax/test/x"})),
        _server("c:1", wanted=frozenset({"/sax/test/gone"})),
    ]
    plan = assign(
        servers,
        [ModelView(model_id="/sax/test/x", model_path=PATH, replicas=1)],
        max_models_per_server=4,
    )
    assert set(plan.unloads) == {("a:1", "/sax/test/x"), ("c:1", "/sax/test/gone")}
    assert plan.loads == ()


def test_capacity_and_adoption_grace() -> None:
    servers = [_server("a:1", wanted=frozenset({"/sax/test/x"}))]
    models = [
        ModelView(model_id="/sax/test/x", model_path=PATH, replicas=1),
        ModelView(model_id="/sax/test/y", model_path=PATH, replicas=1),
        ModelView(model_id="/sax/test/z", model_path=PATH, replicas=1, may_add=False),
    ]
    assert assign(servers, models, max_models_per_server=1).loads == ()
    assert assign(servers, models, max_models_per_server=3).loads == (("a:1", "/sax/test/y"),)
