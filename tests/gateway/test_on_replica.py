"""Issue 13: everything that works on one machine works against a cluster replica. A
representative part of the gateway and board tests runs again here, unchanged, with every venue
they build being a replica (``crowdex serve --journal``'s engine) on a real 3-node NATS JetStream
cluster, each on its own stream of three copies, instead of a server on the file journal.

The chosen tests cover accounts and idempotency, matching and order types, the WebSocket (order
entry, pipelining, gap-free books), amends, call auctions, the cn2015 bulletin board with its
T+5 on the manual clock, and the equity, product and debt boards. Left out are tests about the
file journal itself (replay from the data dir, snapshots, restarts) and ones that patch the
sequencer. Importing a test into this module is what runs it again: pytest collects it here,
and the fixture below applies to it (fixtures that live beside the tests are imported too).

The whole of both suites runs on replicas with ``pytest --on-replica tests/gateway
tests/boards`` (tests/conftest.py), less the tests marked ``one_machine``: four that replay the
data dir's journal or fake the server's wall clock, neither of which a replica has.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from engine.log.natscluster import NatsCluster
from tests.boards.conftest import venue  # noqa: F401 - the fixture, for the imported tests
from tests.boards.test_debt import (  # noqa: F401
    test_fixed_rate_first_come_schedule_late_default_and_repayment,
)
from tests.boards.test_equity import (  # noqa: F401
    test_cancel_refusals,
    test_oversubscribed_pro_rata_ties_go_to_the_earliest,
)
from tests.boards.test_product_ip import (  # noqa: F401
    test_last_units_of_a_tier_under_concurrent_pledges,
    test_pledges_payout_70_30_and_delivery,
)
from tests.engine.conftest import cluster  # noqa: F401 - the fixture
from tests.gateway.conftest import OnReplica
from tests.gateway.test_accounts import (  # noqa: F401
    test_create_account_deposit_withdraw_me,
    test_deposit_reference_dedupes,
    test_health_metrics_openapi,
    test_idempotency_key_replays_first_response_byte_for_byte,
    test_idempotent_account_creation_returns_the_same_working_key,
    test_roles_are_enforced,
)
from tests.gateway.test_amend import (  # noqa: F401
    test_a_lower_quantity_keeps_its_place_a_larger_one_goes_to_the_back,
    test_an_amend_takes_an_idempotency_key_like_a_post,
)
from tests.gateway.test_auction import (  # noqa: F401
    test_orders_rest_until_the_uncross_then_trade_at_one_price,
)
from tests.gateway.test_offers import (  # noqa: F401
    cn_market,
    test_sell_offer_reserves_units_and_an_accept_trades_with_the_seller_fee,
    test_t5_holding_period_across_a_weekend,
)
from tests.gateway.test_orders import (  # noqa: F401
    test_investors_cannot_see_or_cancel_each_others_orders,
    test_limit_orders_match_at_the_resting_price_in_time_priority,
    test_market_ioc_fok_post_only,
    test_self_trade_prevention_decrement_and_cancel_oldest,
)
from tests.gateway.test_ws import (  # noqa: F401
    test_order_and_cancel_over_the_socket_with_acks_and_order_updates,
    test_orders_in_flight_when_the_client_leaves_still_take_effect,
    test_pipelined_orders_beyond_the_in_flight_cap_are_all_answered_in_order,
    test_snapshot_plus_updates_rebuild_the_exact_book_over_a_random_session,
)

COPIES_TIMEOUT_S = 5.0


@pytest.fixture(autouse=True)
def on_replica(cluster: NatsCluster) -> Iterator[None]:  # noqa: F811 - the fixture
    """Every venue this module's tests build is a replica on the cluster (autouse fixtures run
    before the tests' own, which build the venues). After the test, each venue it built must
    have written its journal to its stream, held by all three nodes."""
    outer = OnReplica.nats_urls  # set for the whole session under --on-replica
    OnReplica.nats_urls = tuple(cluster.urls)
    OnReplica.streams = set()
    try:
        yield
    finally:
        OnReplica.nats_urls = outer
    assert OnReplica.streams, "the test built no venue"
    # A quorum acknowledged every append; the third copy may trail it by a moment.
    deadline = time.monotonic() + COPIES_TIMEOUT_S
    while True:
        stored = [stream_messages(node.monitor_port) for node in cluster.nodes]
        if all(copy.get(stream, 0) > 0 for copy in stored for stream in OnReplica.streams):
            return
        assert time.monotonic() < deadline, (OnReplica.streams, stored)
        time.sleep(0.05)


def stream_messages(monitor_port: int) -> dict[str, int]:
    """Messages per stream that one NATS node holds (its monitoring endpoint's /jsz)."""
    url = f"http://127.0.0.1:{monitor_port}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        details = json.loads(response.read()).get("account_details") or []
    return {stream["name"]: stream["state"]["messages"]
            for account in details for stream in account.get("stream_detail") or []}
