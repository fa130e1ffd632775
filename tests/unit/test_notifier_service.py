"""Delivery loop: retries with capped exponential backoff, permanent failures, sent marks."""

from __future__ import annotations

import httpx
import pytest

from citywatch.settings import CrewSettings, NotifierSettings, RouteRule, Settings
from notifier.channels.webhook import WebhookChannel
from notifier.service import Notifier
from notifier.store import Store


def settings(tmp_path: object) -> Settings:
    ns = NotifierSettings(
        crews=[
            CrewSettings(id="c", webhook_url="http://hook/ok", mqtt=False),
            CrewSettings(id="bad", webhook_url="http://hook/bad", mqtt=False),
        ],
        routes=[RouteRule(crew="bad", district="south"), RouteRule(crew="c")],
        default_crew="c",
        supervisor=CrewSettings(id="s", mqtt=False),
        webhook_secret="k",
        retry_base_s=2.0,
        retry_cap_s=5.0,
        max_attempts=4,
    )
    return Settings(state_dir=tmp_path, notifier=ns)


def ev(alert: str, district: str) -> dict[str, object]:
    return {
        "alert_id": alert,
        "kind": "k",
        "target": alert,
        "target_type": "device",
        "family": "bin",
        "district": district,
        "severity": "major",
        "state": "raised",
        "episode_start": 1,
        "ts": 1,
        "message": "",
    }


async def test_retry_backoff_then_success_and_permanent_failure(tmp_path: object) -> None:
    s = settings(tmp_path)
    # A file, not "sqlite://": the in-memory database is one connection shared by every
    # thread, and two concurrent to_thread writes on it can undo each other.
    st = Store(f"sqlite:///{tmp_path}/orders.db")
    st.create_schema()
    n = Notifier(s, st)
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.path)
        if req.url.path == "/bad":
            return httpx.Response(400)
        return httpx.Response(503 if calls.count("/ok") <= 2 else 200)

    ch = WebhookChannel(s)
    ch.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    n.channels["webhook"] = ch
    n._apply_batch([ev("a", "north"), ev("b", "south")])

    assert await n.deliver_due() == 2
    rows = {d["recipient"]: d for d in st.deliveries()}
    assert rows["http://hook/bad"]["state"] == "failed"  # 400: retrying cannot help
    ok = rows["http://hook/ok"]
    assert ok["state"] == "pending" and ok["attempts"] == 1 and "503" in ok["last_error"]
    assert await n.deliver_due() == 0  # not due before its backoff
    # Backoff doubles and is capped; the last allowed attempt gives up.
    assert n._retry_at(0, 100.0) == 102.0 and n._retry_at(1, 100.0) == 104.0
    assert n._retry_at(2, 100.0) == 105.0 and n._retry_at(3, 100.0) is None
    st.mark_failed(ok["id"], "x", retry_at=0.0)  # fast-forward the clock for this row
    await n.deliver_due()  # second 503
    st.mark_failed(ok["id"], "x", retry_at=0.0)
    await n.deliver_due()  # 200
    final = {d["recipient"]: d for d in st.deliveries()}["http://hook/ok"]
    assert final["state"] == "sent" and calls.count("/ok") == 3 and calls.count("/bad") == 1
    await ch.close()


@pytest.mark.parametrize("status,permanent", [(500, False), (429, False), (404, True)])
async def test_webhook_status_classification(
    tmp_path: object, status: int, permanent: bool
) -> None:
    from notifier.channels import DeliveryError

    ch = WebhookChannel(settings(tmp_path))
    ch.client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(status)))
    d = {
        "idempotency_key": "cw-1",
        "event": "opened",
        "crew_id": "c",
        "recipient": "http://h/",
        "payload": {"order": {}},
    }
    with pytest.raises(DeliveryError) as e:
        await ch.send(d)
    assert e.value.permanent is permanent
    await ch.close()


async def test_commit_refused_after_a_rebalance_keeps_consuming(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notifier stopped (SIGSTOP) past the Kafka session timeout finds its group rebalanced:
    # the commit is refused. It used to exit there (the fault matrix's notifier stall cell),
    # leaving every later alert without a work order until someone restarted it.
    import asyncio
    from types import SimpleNamespace

    import orjson
    from aiokafka import TopicPartition
    from aiokafka.errors import CommitFailedError

    import notifier.service as service

    tp = TopicPartition("citywatch.alerts", 0)
    stop = asyncio.Event()
    polls = [
        {tp: [SimpleNamespace(value=orjson.dumps(ev("a", "north")), offset=0)]},
        {
            tp: [
                SimpleNamespace(value=orjson.dumps(ev("a", "north")), offset=0),  # the replay
                SimpleNamespace(value=orjson.dumps(ev("b", "north")), offset=1),
            ]
        },
    ]
    commits: list[dict[TopicPartition, int]] = []

    class FakeConsumer:
        def __init__(self, *_: object, **__: object) -> None:
            pass

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

        async def getmany(self, **_: object) -> dict[TopicPartition, list[object]]:
            if not polls:
                stop.set()
                return {}
            return polls.pop(0)

        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            commits.append(offsets)
            if len(commits) == 1:
                raise CommitFailedError("the group has already rebalanced")

    monkeypatch.setattr(service, "AIOKafkaConsumer", FakeConsumer)
    st = Store(f"sqlite:///{tmp_path}/orders.db")
    st.create_schema()
    n = Notifier(settings(tmp_path), st)
    await asyncio.wait_for(n.consume(stop), timeout=10)
    assert commits == [{tp: 1}, {tp: 2}]  # refused once, then the replayed batch committed
    assert n.stats["commit_failed"] == 1 and n.stats["duplicate"] == 1
    assert sorted(o["alert_id"] for o in st.list_orders()) == ["a", "b"]
    assert len(st.deliveries()) == 2  # one notification per order, none for the replay
