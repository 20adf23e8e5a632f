"""The segment admin API, the profile look-up and ``/audiences`` with segments, and the
``[[dmp.segments]]`` / ``[[dmp.destinations]]`` configuration."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cookiematch.config import load_config
from cookiematch.config.dmp import DmpAnalyticsConfig, DmpConfig
from cookiematch.config.dmp_segments import DmpDestinationConfig, DmpSegmentConfig
from cookiematch.config.values import Secret
from cookiematch.dmp.consent import RequestConsent
from cookiematch.dmp.events import EventType, ImpressionEvent
from cookiematch.dmp.service import DmpService
from cookiematch.errors import ConfigError
from cookiematch.roots.dmp import build_core
from cookiematch.storage import Store
from cookiematch.web.admin import guarded_app
from cookiematch.web.dmp.segments import SegmentAdmin
from cookiematch.web.outbound import PartnerTransport

TOKEN = "segment-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_admin_routes_profile_and_audiences(
    store: Store, service: DmpService, tmp_path: Path, quiet: RequestConsent
) -> None:
    for i in range(12):
        uid = f"u{i:02d}"
        if i % 2 == 0:
            await service.matches.record("analytics", uid, f"A{i}", 0)
        if i % 3 == 0:
            await service.impression(uid, ImpressionEvent(EventType.CLICK, "spring"))
    files = DmpDestinationConfig(id="files", kind="file", path=f"{tmp_path}/{{segment}}.csv")
    core = build_core(
        DmpConfig(
            segments=(
                DmpSegmentConfig(id="synced", rule={"synced": "analytics"}, description="d"),
                DmpSegmentConfig(id="clickers", rule={"exposed": "click"}),
            ),
            destinations=(files,),
            analytics=DmpAnalyticsConfig(path=str(tmp_path / "dmp.duckdb")),  # exports read it
        ),
        store,
    )
    segments, exports = core.segments, core.exports
    await segments.recompute()
    async with PartnerTransport() as transport:  # unused by a file destination
        await exports.export("clickers", "files", transport)
    assert (await service.profile("u00")).segments == ["clickers", "synced"]  # type: ignore[union-attr]
    assert (await service.audiences("u00", quiet)).kv["dmp_segments"] == ["clickers", "synced"]

    app = guarded_app(SegmentAdmin(segments, exports).routes(), TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dmp", headers=AUTH
    ) as client:
        listing = (await client.get("/admin/v1/segments")).json()
        assert [(s["id"], s["size"]) for s in listing["segments"]] == [
            ("synced", 6),
            ("clickers", 4),
        ]
        assert listing["last_recompute"]["profiles"] == 8
        one = (await client.get("/admin/v1/segments/synced")).json()
        assert (one["size"], one["exports"]) == (6, {})
        clickers = (await client.get("/admin/v1/segments/clickers")).json()
        assert list(clickers["exports"]) == ["files"]
        assert (clickers["exports"]["files"]["accepted"], clickers["size"]) == (4, 4)
        assert (await client.get("/admin/v1/segments/nope")).status_code == 404
        for mode in ("exact", "sketch"):
            answer = await client.get(
                "/admin/v1/overlap",
                params={"audience": ["segment:synced", "click:spring"], "mode": mode},
            )
            data = answer.json()
            assert data["population"] == 8
            assert data["pairs"][0]["overlap"]["estimate"] == 2
            assert (data["error_bound"] is None) == (mode == "exact")
        affinity = (await client.get("/admin/v1/overlap?audience=click:spring")).json()
        assert affinity["pairs"][0]["b"] == "segment:clickers"
        assert (await client.get("/admin/v1/overlap")).status_code == 422


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "dmp.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///{tmp_path}/x.db"
[dmp]
[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/s?r=${{CALLBACK_URL}}"
{extra}
"""
    )
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[dmp.segments]]\nid = "s"\nrule = { all = [ { attribute = "a", op = "like" } ] }',
         "dmp.segments[0].rule.all[0].op: expected one of"),
        ('[[dmp.segments]]\nid = "s"\nrule = { synced = "dsp" }\n'
         '[[dmp.segments]]\nid = "s"\nrule = { synced = "dsp" }', "dmp.segments[1].id: duplicate"),
        ('[[dmp.destinations]]\nid = "d"\nurl = "https://x.example/"\npartner = "dsp"',
         "dmp.destinations[0].secret: required for kind 'http'"),
        ('[[dmp.destinations]]\nid = "d"\nurl = "ftp://x"\nsecret = "0123456789abcdef"',
         "dmp.destinations[0].url: URL must be absolute http:// or https://"),
        ('[[dmp.destinations]]\nid = "d"\nurl = "https://x.example/"\nsecret = "short"',
         "dmp.destinations[0].secret: must be at least 16"),
        ('[[dmp.destinations]]\nid = "d"\nurl = "https://x.example/"\nsecret = "0123456789abcdef"'
         '\npartner = "nobody"', "dmp.destinations[0].partner: no partner"),
        ('[[dmp.destinations]]\nid = "d"\nkind = "exchange_user_list"\nurl = "http://e.example"',
         "dmp.destinations[0].token: required"),
        ('[[dmp.destinations]]\nid = "d"\nkind = "file"', "dmp.destinations[0].path: required"),
    ],
)  # fmt: skip
def test_configuration_errors_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, extra))
    assert message in str(caught.value)


def test_destinations_become_models(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            '[[dmp.destinations]]\nid = "x"\nkind = "exchange_user_list"\n'
            'url = "http://e.example:8700"\ntoken = "tok"\nuser_list_id = 12345\n'
            'nid = "ad_network_xyz"\npartner = "dsp"\nbatch_size = 500',
        )
    )
    assert config.dmp is not None
    (dest,) = [d.to_model() for d in config.dmp.destinations]
    assert (dest.id, dest.delivery.batch_size, dest.partner) == ("x", 500, "dsp")  # type: ignore[union-attr]
    assert "sekrit" not in repr(DmpDestinationConfig(id="y", token=Secret("sekrit")))
