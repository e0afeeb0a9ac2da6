#!/usr/bin/env python3
"""A client in another language over standard gRPC: grpcio, with stubs that grpcio-tools
generates from proto/ at run time, the standard health and reflection clients
(grpcio-health-checking, grpcio-reflection), grpcio-status for error details, and a JWT it
signs itself. No Swift code is involved on this side.

  NEST_AUTH_SECRET=... grpc_client.py --catalog H:P --entitlement H:P --order H:P --settlement H:P

Against the four executables' gRPC (HTTP/2) ports: grpc.health.v1 Check and Watch, the
services listed through reflection, UNAUTHENTICATED / PERMISSION_DENIED / INVALID_ARGUMENT with
field violations, then a full scenario-3 sale and its refund with every balance checked.
Prints one line per check; exits 0 when all hold.
"""
import argparse
import base64
import hashlib
import hmac
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_stubs(workdir):
    """protoc (grpcio-tools' own) over nest/ of proto/: messages and gRPC stubs."""
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(p.relative_to(ROOT / "proto").as_posix() for p in (ROOT / "proto" / "nest").rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{include}",
         f"--python_out={workdir}", f"--grpc_python_out={workdir}", *protos],
        check=True)
    for directory, _, _ in os.walk(workdir):
        pathlib.Path(directory, "__init__.py").touch()
    sys.path.insert(0, str(workdir))
    modules = {}
    for name in ["common", "catalog", "entitlement", "order", "settlement", "events"]:
        modules[name] = importlib.import_module(f"nest.{name}.v1.{name}_pb2")
        if name != "common":
            modules[name + "_grpc"] = importlib.import_module(f"nest.{name}.v1.{name}_pb2_grpc")
    return modules


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(secret, subject, role, lifetime=600):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": subject, "role": role, "iss": "nest", "exp": int(time.time()) + lifetime}
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls-health", nargs=2, metavar=("ADDRESS", "ROOT_CERT"),
                        help="only check grpc.health.v1 over TLS at ADDRESS, trusting ROOT_CERT")
    for service in ["catalog", "entitlement", "order", "settlement", "events"]:
        parser.add_argument(f"--{service}")
    args = parser.parse_args()
    if args.tls_health:
        address, root = args.tls_health
        credentials = grpc.ssl_channel_credentials(root_certificates=pathlib.Path(root).read_bytes())
        channel = grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "localhost")])
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        print(f"over TLS: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}", flush=True)
        sys.exit(0 if status == health_pb2.HealthCheckResponse.SERVING else 1)
    secret = os.environ["NEST_AUTH_SECRET"]
    channels = {name: grpc.insecure_channel(getattr(args, name))
                for name in ["catalog", "entitlement", "order", "settlement", "events"]}
    failures = []

    def check(label, ok, detail=""):
        print(f"{'ok' if ok else 'FAILED'}: {label}{'' if ok else ' (' + str(detail) + ')'}", flush=True)
        if not ok:
            failures.append(label)

    def auth(role, subject):
        return [("authorization", f"Bearer {sign_token(secret, subject, role)}")]

    with tempfile.TemporaryDirectory() as workdir:
        pb = load_stubs(workdir)
        common, catalog, entitlement, order, settlement = (
            pb["common"], pb["catalog"], pb["entitlement"], pb["order"], pb["settlement"])
        catalog_stub = pb["catalog_grpc"].CatalogServiceStub(channels["catalog"])
        entitlement_stub = pb["entitlement_grpc"].EntitlementServiceStub(channels["entitlement"])
        order_stub = pb["order_grpc"].MarketplaceOrderServiceStub(channels["order"])
        settlement_stub = pb["settlement_grpc"].SettlementServiceStub(channels["settlement"])

        # grpc.health.v1, without credentials.
        for name, channel in channels.items():
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
            check(f"grpc.health.v1 Check {name}: SERVING", status == health_pb2.HealthCheckResponse.SERVING, status)
        watch = health_pb2_grpc.HealthStub(channels["catalog"]).Watch(
            health_pb2.HealthCheckRequest(service="nest.catalog.v1.CatalogService"), timeout=10)
        first = next(watch)
        watch.cancel()
        check("grpc.health.v1 Watch catalog: SERVING first",
              first.status == health_pb2.HealthCheckResponse.SERVING, first.status)

        # Reflection: the services and the files that define them.
        database = ProtoReflectionDescriptorDatabase(channels["order"])
        services = set(database.get_services())
        check("reflection lists nest.order.v1.MarketplaceOrderService and grpc.health.v1.Health",
              {"nest.order.v1.MarketplaceOrderService", "grpc.health.v1.Health"} <= services, services)
        defined = database.FindFileContainingSymbol("nest.order.v1.MarketplaceOrderService.PayOrder")
        check("reflection finds PayOrder in nest/order/v1/order.proto", defined.name == "nest/order/v1/order.proto",
              defined.name)

        # Errors as any gRPC client reads them.
        def code_of(call):
            try:
                call()
                return None, None
            except grpc.RpcError as error:
                return error.code(), error

        code, _ = code_of(lambda: catalog_stub.ListServices(catalog.ListServicesRequest(), timeout=10))
        check("no token: UNAUTHENTICATED", code == grpc.StatusCode.UNAUTHENTICATED, code)
        code, _ = code_of(lambda: catalog_stub.CreateService(
            catalog.CreateServiceRequest(name="x"), metadata=auth("customer", "py-cust"), timeout=10))
        check("a customer creating a service: PERMISSION_DENIED", code == grpc.StatusCode.PERMISSION_DENIED, code)
        code, error = code_of(lambda: catalog_stub.CreateService(
            catalog.CreateServiceRequest(name=""), metadata=auth("isv", "py-isv"), timeout=10))
        fields = []
        if error is not None:
            status = rpc_status.from_call(error)
            from google.rpc import error_details_pb2
            for detail in (status.details if status else []):
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    fields += [v.field for v in bad.field_violations]
        check("an empty service: INVALID_ARGUMENT, violations in grpc-status-details-bin",
              code == grpc.StatusCode.INVALID_ARGUMENT and "name" in fields, (code, fields))

        # A scenario-3 sale and its refund.
        usd = lambda amount: common.Money(currency="USD", amount_minor=amount)
        isv, dist, cust, op = "py-isv", "py-dist", "py-cust", "py-op"
        a = catalog_stub.CreateService(catalog.CreateServiceRequest(
            name="Py A", type=common.SERVICE_TYPE_FULLY_MANAGED,
            deployment_package=catalog.DeploymentPackage(artifact_ref="oci://py/a:1", checksum_sha256="ab" * 32)),
            metadata=auth("isv", isv), timeout=10)
        catalog_stub.PublishService(catalog.PublishServiceRequest(service_id=a.service.id, version_id=a.version.id),
                                    metadata=auth("isv", isv), timeout=10)
        catalog_stub.EnableDistribution(catalog.EnableDistributionRequest(service_id=a.service.id),
                                        metadata=auth("isv", isv), timeout=10)
        plan = lambda price: [catalog.Plan(plan_id="monthly", billing_period=common.BILLING_PERIOD_MONTH,
                                           unit_price=usd(price))]
        catalog_stub.ListOnMarketplace(catalog.ListOnMarketplaceRequest(service_id=a.service.id, plans=plan(4900)),
                                       metadata=auth("isv", isv), timeout=10)
        entitlement_stub.GrantDistribution(entitlement.GrantDistributionRequest(
            base_service_id=a.service.id, distributor_id=dist,
            terms=entitlement.DistributionTerms(wholesale_price=usd(3333))), metadata=auth("isv", isv), timeout=10)
        b = catalog_stub.CreateDerivedService(catalog.CreateDerivedServiceRequest(
            base_service_id=a.service.id, name="Py B", type=common.SERVICE_TYPE_FULLY_MANAGED),
            metadata=auth("distributor", dist), timeout=10)
        catalog_stub.PublishService(catalog.PublishServiceRequest(service_id=b.service.id, version_id=b.version.id),
                                    metadata=auth("distributor", dist), timeout=10)
        product = catalog_stub.ListOnMarketplace(catalog.ListOnMarketplaceRequest(
            service_id=b.service.id, plans=plan(7999)), metadata=auth("distributor", dist), timeout=10).product
        created = order_stub.CreateOrder(order.CreateOrderRequest(
            product_id=product.id, plan_id="monthly", quantity=1, periods=1), metadata=auth("customer", cust),
            timeout=30).order
        paid = order_stub.PayOrder(order.PayOrderRequest(order_id=created.id, payment_reference="py-psp"),
                                   metadata=auth("customer", cust), timeout=30)
        check("scenario 3: the customer pays, and cannot see the linked order",
              paid.order.status == order.ORDER_STATUS_PAID and len(paid.linked_orders) == 0
              and not paid.order.HasField("wholesale"), paid.order.status)

        def wait_for(status):
            deadline = time.time() + 60
            while time.time() < deadline:
                got = order_stub.GetOrder(order.GetOrderRequest(order_id=created.id),
                                          metadata=auth("operator", op), timeout=10).order
                if got.status == status and got.delivery.pending == 0:
                    return got
                time.sleep(0.05)
            return got

        got = wait_for(order.ORDER_STATUS_FULFILLED)
        check("the order is FULFILLED with every delivery acknowledged", got.status == order.ORDER_STATUS_FULFILLED,
              got.status)

        def balance(kind, account):
            answer = settlement_stub.GetBalance(settlement.GetBalanceRequest(
                account=settlement.AccountRef(kind=kind, account_id=account)), metadata=auth("operator", op), timeout=10)
            return sum(m.amount_minor for m in answer.balance.amounts if m.currency == "USD")

        commission = lambda amount: amount * 500 // 10000
        expected = {
            (settlement.ACCOUNT_KIND_CUSTOMER, cust): -7999,
            (settlement.ACCOUNT_KIND_DISTRIBUTOR, dist): 7999 - commission(7999) - 3333,
            (settlement.ACCOUNT_KIND_ISV, isv): 3333 - commission(3333),
        }
        got_balances = {key: balance(*key) for key in expected}
        check("balances after the sale", got_balances == expected, got_balances)

        order_stub.RefundOrder(order.RefundOrderRequest(order_id=created.id, reason="py refund"),
                               metadata=auth("distributor", dist), timeout=30)
        got = wait_for(order.ORDER_STATUS_REFUNDED)
        check("the refund is delivered", got.status == order.ORDER_STATUS_REFUNDED, got.status)
        got_balances = {key: balance(*key) for key in expected}
        check("balances after the refund are back to zero", all(v == 0 for v in got_balances.values()), got_balances)

        # The customer's event feed: its order paid and refunded, no wholesale, no linked order.
        events_stub = pb["events_grpc"].EventsServiceStub(channels["events"])
        feed = []
        deadline = time.time() + 30
        while time.time() < deadline:
            feed = list(events_stub.ListEvents(pb["events"].ListEventsRequest(),
                                               metadata=auth("customer", cust), timeout=10).events)
            if {"order.paid", "order.refunded"} <= {event.type for event in feed}:
                break
            time.sleep(0.2)
        types = {event.type for event in feed}
        check("the customer's feed has its order paid and refunded", {"order.paid", "order.refunded"} <= types, types)
        check("the customer's feed shows no wholesale and no linked order",
              all(not event.order.HasField("wholesale") and not event.order.linked_order_ids for event in feed))

    print("all checks hold" if not failures else f"{len(failures)} check(s) failed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
