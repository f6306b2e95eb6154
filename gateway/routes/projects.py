"""Projects: listing, review, subscriptions, the close, allocations, schedules, distributions,
revenue reports, delivery, disclosures and the integrity list (API.md "Projects")."""

from __future__ import annotations

import msgspec
from aiohttp import web

from boards import integrity, registry, rules
from engine import offerings_commands as oc
from engine.clock import US_PER_SECOND, format_time_us, parse_time_us
from engine.errors import CrowdexError
from engine.machine import AccountInfo
from engine.offerings import (
    Offerings,
    Project,
    allocation_view,
    disclosure_view,
    distribution_view,
    subscription_view,
)
from gateway import http, keys
from gateway import project_schemas as ps
from gateway.hub import ChannelKind
from gateway.routes import Query, Route, query_enum, query_int

LIST_LIMIT_MAX = 1000


def offerings(request: web.Request) -> Offerings:
    return request.app[keys.ENGINE].machine.component("offerings")


def project_channel(request: web.Request, project_id: int,
                    account: AccountInfo | None) -> tuple[None, dict]:
    """``project:<id>`` on the WebSocket: the project as GET /v1/projects/{id} shows it."""
    component = offerings(request)
    return None, public_view(component, component.project_for(project_id, account))


def public_view(component: Offerings, project: Project) -> dict:
    """The engine's project view plus what an investor reads before subscribing: the issuer's
    name (an account number tells them nothing) and the project's own cancel rule (the rules it
    was listed under; under cn2015 a product pledge cannot be cancelled at all)."""
    view = component.project_view(project)
    issuer = component.machine.accounts.get(project.issuer_id)
    if issuer is not None:
        view["issuer_name"] = issuer.name
    config = component.board(project).config
    view["cancel_window_seconds"] = config.cancel_window_us // US_PER_SECOND
    view["cancellable"] = config.cancellable_cn2015 or component.machine.profile != "cn2015"
    return view


CHANNELS = {"project": ChannelKind(project_channel)}


def viewer(request: web.Request) -> AccountInfo | None:
    """The caller if it sent a key (a bad key is 401); None for anonymous public reads."""
    if "Authorization" not in request.headers:
        return None
    return http.principal(request)


# ---- writes ---------------------------------------------------------------------------------


async def create_project(request: web.Request) -> web.Response:
    req = await http.body(request, ps.CreateProjectRequest)
    board = registry.board(req.board)
    terms = http.decode(bytes(req.terms), board.terms_type, request.content_type)
    try:
        deadline_us = parse_time_us(req.deadline)
    except ValueError as error:
        raise CrowdexError("invalid_field", f"deadline: {error}") from None
    issuer = http.require(request, "issuer")
    command = oc.CreateProject(req.board, req.title, req.description, deadline_us,
                               msgspec.to_builtins(terms))
    return http.reply(request, await http.submit(request, command, issuer))


async def _review(request: web.Request, approve: bool) -> web.Response:
    project_id = http.path_id(request, "project_id")
    operator = http.require(request, "operator")
    command = oc.ReviewProject(project_id, approve)
    return http.reply(request, await http.submit(request, command, operator))


async def approve(request: web.Request) -> web.Response:
    return await _review(request, True)


async def reject(request: web.Request) -> web.Response:
    return await _review(request, False)


async def close(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    operator = http.require(request, "operator")
    return http.reply(request, await http.submit(request, oc.CloseProject(project_id), operator))


async def subscribe(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    req = await http.body(request, ps.SubscribeRequest)
    investor = http.require(request, "investor")
    command = oc.Subscribe(project_id, req.quantity, req.rate_bps, req.tier_id)
    return http.reply(request, await http.submit(request, command, investor))


async def cancel_subscription(request: web.Request) -> web.Response:
    subscription_id = http.path_id(request, "subscription_id")
    investor = http.require(request, "investor")
    command = oc.CancelSubscription(subscription_id)
    return http.reply(request, await http.submit(request, command, investor))


async def distribute(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    req = await http.body(request, ps.DistributionRequest)
    issuer = http.require(request, "issuer")
    command = oc.Distribute(project_id, req.amount)
    return http.reply(request, await http.submit(request, command, issuer))


async def report_revenue(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    req = await http.body(request, ps.RevenueRequest)
    issuer = http.require(request, "issuer")
    command = oc.ReportRevenue(project_id, req.month, req.revenue)
    return http.reply(request, await http.submit(request, command, issuer))


async def delivery(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    raw = await request.read()
    req = (http.decode(raw, ps.DeliveryRequest, request.content_type) if raw.strip()
           else ps.DeliveryRequest())
    operator = http.require(request, "operator")
    command = oc.ConfirmDelivery(project_id, req.delivered)
    return http.reply(request, await http.submit(request, command, operator))


async def post_disclosure(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    req = await http.body(request, ps.DisclosureRequest)
    issuer = http.require(request, "issuer")
    command = oc.PostDisclosure(project_id, req.title, req.body)
    return http.reply(request, await http.submit(request, command, issuer))


# ---- reads ----------------------------------------------------------------------------------


async def list_projects(request: web.Request) -> web.Response:
    board = request.query.get("board")
    status = request.query.get("status")
    if board is not None and board not in registry.BOARDS:
        raise CrowdexError("invalid_field", f"board must be one of {sorted(registry.BOARDS)}")
    if status is not None and status not in rules.STATUSES:
        raise CrowdexError("invalid_field", f"status must be one of {list(rules.STATUSES)}")
    limit = http.query_int(request, "limit", LIST_LIMIT_MAX, 1, LIST_LIMIT_MAX)
    who = viewer(request)
    component = offerings(request)
    out = []
    for project in component.projects_by_id(status):
        if board is not None and project.board != board:
            continue
        if component.visible(project, who):
            out.append(public_view(component, project))
            if len(out) >= limit:
                break
    return http.respond(request, 200, out)


async def get_project(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    component = offerings(request)
    project = component.project_for(project_id, viewer(request))
    return http.respond(request, 200, public_view(component, project))


async def allocations(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    who = http.require(request, "operator", "issuer", "investor")
    component = offerings(request)
    project = component.project_for(project_id, who)
    if who.role == "issuer" and who.account_id != project.issuer_id:
        # API.md: the role may, the project is not theirs: 404, as for any thing not yours.
        raise CrowdexError("project_not_found", f"no project {project_id} of yours")
    if project.status not in rules.CLOSED_STATUSES:
        return http.respond(request, 200, [])
    rows = [allocation_view(s) for s in component.project_subscriptions(project_id)
            if s.status in ("allocated", "refunded")
            and (who.role != "investor" or s.account_id == who.account_id)]
    return http.respond(request, 200, rows)


async def schedule(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    component = offerings(request)
    project = component.project_for(project_id, viewer(request))
    now = component.machine.now_us
    if component.terms.is_board(project):  # operating rights: the months, then the buy-back
        return http.respond(request, 200, component.terms.schedule(project, now))
    if project.board != "debt":
        raise CrowdexError("not_found",
                           "only debt and operating-rights projects have a schedule")
    rows = []
    for instalment, (paid, _) in zip(component.instalments(project),
                                     component.instalments_paid(project), strict=True):
        rows.append({
            "number": instalment.number, "due": format_time_us(instalment.due_us),
            "principal": instalment.principal_fen, "interest": instalment.interest_fen,
            "amount": instalment.amount_fen, "paid": paid,
            "status": component.instalment_status(project, instalment, now, paid),
        })
    return http.respond(request, 200, rows)


async def list_distributions(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    component = offerings(request)
    component.project_for(project_id, viewer(request))
    rows = [distribution_view(d) for d in component.project_distributions(project_id)]
    return http.respond(request, 200, rows)


async def list_disclosures(request: web.Request) -> web.Response:
    project_id = http.path_id(request, "project_id")
    component = offerings(request)
    component.project_for(project_id, viewer(request))
    rows = [disclosure_view(d) for d in component.project_disclosures(project_id)]
    return http.respond(request, 200, rows)


async def my_subscriptions(request: web.Request) -> web.Response:
    investor = http.require(request, "investor")
    component = offerings(request)
    subs = component.account_subscriptions(investor.account_id)[-LIST_LIMIT_MAX:]
    return http.respond(request, 200, [subscription_view(s) for s in subs])


async def integrity_list(request: web.Request) -> web.Response:
    text = request.query.get("month")
    machine = request.app[keys.ENGINE].machine
    if text is None:
        text = format_time_us(machine.now_us)[:7]
    try:
        year, month = integrity.parse_month(text)
    except ValueError as error:
        raise CrowdexError("invalid_field", str(error)) from None
    who = viewer(request)
    lists = integrity.integrity_lists(offerings(request), year, month)
    if who is not None and who.role == "operator":
        return http.respond(request, 200, {"month": text, **lists})
    return http.respond(request, 200, {"month": text, "black": lists["black"]})


P = "/v1/projects/{project_id}"
LIST_QUERY = (
    query_enum("board", list(registry.BOARDS), "Only projects of this board"),
    query_enum("status", rules.STATUSES, "Only projects in this status"),
    query_int("limit", 1, LIST_LIMIT_MAX, f"At most this many (default {LIST_LIMIT_MAX})"),
)
# YYYY-MM from 1970-01 on, as boards.integrity.parse_month takes it.
MONTH_QUERY = Query("month", {"type": "string",
                              "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$"},
                    "YYYY-MM (default: the exchange clock's month)")
ROUTES = [
    Route("POST", "/v1/projects", create_project,
          "List a project (pending review); `terms` follow the board's schema",
          ("issuer",), ps.CreateProjectRequest, ps.ProjectView, 201),
    Route("GET", "/v1/projects", list_projects, "Projects, filtered by board and status",
          (), None, list[ps.ProjectView], query=LIST_QUERY),
    Route("GET", P, get_project, "One project with its figures", (), None, ps.ProjectView),
    Route("POST", P + "/approve", approve, "Approve: the offering opens", ("operator",),
          None, ps.ProjectView),
    Route("POST", P + "/reject", reject, "Reject a listing", ("operator",), None,
          ps.ProjectView),
    Route("POST", P + "/close", close, "Close the offering now", ("operator",), None,
          ps.ProjectView),
    Route("POST", P + "/subscriptions", subscribe, "Subscribe (cash reserved at once)",
          ("investor",), ps.SubscribeRequest, ps.SubscriptionView, 201),
    Route("DELETE", "/v1/subscriptions/{subscription_id}", cancel_subscription,
          "Cancel a subscription before the cancel window", ("investor",), None,
          ps.SubscriptionView),
    Route("GET", "/v1/me/subscriptions", my_subscriptions, "The caller's subscriptions",
          ("investor",), None, list[ps.SubscriptionView]),
    Route("GET", P + "/allocations", allocations, "Allocations after the close",
          ("operator", "issuer", "investor"), None, list[ps.AllocationView]),
    Route("GET", P + "/schedule", schedule,
          "A loan's instalments; operating rights: the months, then the buy-back", (), None,
          list[ps.InstalmentView]),
    Route("POST", P + "/distributions", distribute,
          "Pay a repayment, a royalty or an operating-rights buy-back (paid to holders at "
          "the next batch)", ("issuer",),
          ps.DistributionRequest, ps.DistributionView),
    Route("POST", P + "/revenue", report_revenue,
          "Operating rights: report a month's revenue and pay what it owes at once (to "
          "holders at the next batch)", ("issuer",), ps.RevenueRequest, ps.InstalmentView,
          201),
    Route("GET", P + "/distributions", list_distributions, "A project's distributions",
          (), None, list[ps.DistributionView]),
    Route("POST", P + "/delivery", delivery,
          "Product: release (or, with delivered false, refund) the held payout",
          ("operator",), ps.DeliveryRequest, ps.ProjectView, body_required=False),
    Route("POST", P + "/disclosures", post_disclosure, "Publish a disclosure", ("issuer",),
          ps.DisclosureRequest, ps.DisclosureView, 201),
    Route("GET", P + "/disclosures", list_disclosures, "A project's disclosures", (), None,
          list[ps.DisclosureView]),
    Route("GET", "/v1/integrity", integrity_list, "The monthly integrity list", (), None,
          ps.IntegrityView, query=(MONTH_QUERY,)),
]
