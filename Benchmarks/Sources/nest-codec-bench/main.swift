// Encode and decode of one realistic order message: through the generated Swift types
// (arena, guard, conversion) and, in the same run, raw protobuf-c pack and unpack of the
// very same message, which is the floor the Swift layer is measured against.
import CProtobufC
import Foundation
import NestBenchSupport
import NestProto
@_spi(Benchmarks) import NestProtoRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// A paid scenario-3 order as the marketplace-order service stores and returns it.
func realisticOrder() -> Nest_Order_V1_Order {
  let usd = { (amount: Int64) in
    Nest_Common_V1_Money.with {
      $0.currency = "USD"; $0.amountMinor = amount
    }
  }
  return .with {
    $0.id = "ord_01JD4Z8Q2K7T3M9XW5N6R1B0CA"
    $0.kind = .customer
    $0.buyer = .with {
      $0.role = .customer; $0.accountID = "cust_7f3a9c21"
    }
    $0.seller = .with {
      $0.role = .distributor; $0.accountID = "dist_51be07aa"
    }
    $0.productID = "prod_2b8e41d0"
    $0.planID = "plan_monthly_standard"
    $0.serviceID = "svc_b_9d02c6e4"
    $0.serviceVersionID = "ver_3"
    $0.quantity = 3
    $0.periods = 12
    $0.parameterSetName = "production-ha"
    $0.status = .fulfilled
    $0.price = .with {
      $0.unitPrice = usd(4_900)
      $0.billingPeriod = .month
      $0.amount = usd(176_400)
      $0.commissionBps = 500
      $0.commission = usd(8_820)
      $0.sellerNet = usd(167_580)
    }
    $0.scenario = .with {
      $0.serviceID = "svc_b_9d02c6e4"
      $0.scenario = .scenario3
      $0.settlementMode = .online
      $0.resourceOwner = .with {
        $0.role = .isv; $0.accountID = "isv_0c44d9e2"
      }
      $0.feePayer = .with {
        $0.role = .isv; $0.accountID = "isv_0c44d9e2"
      }
      $0.accessMode = .logonURL
      $0.isvID = "isv_0c44d9e2"
      $0.distributorID = "dist_51be07aa"
      $0.baseServiceID = "svc_a_47aa10f3"
      $0.baseVersionID = "ver_7"
      $0.serviceType = .fullyManaged
      $0.baseServiceType = .fullyManaged
      $0.baseListed = true
    }
    $0.linkedOrderIds = ["ord_01JD4Z8Q2K7T3M9XW5N6R1B0CB"]
    $0.instanceID = "inst_6a1f90c3"
    $0.paymentReference = "pay_ch_3PQx2LkT9"
    $0.history = [
      .with {
        $0.status = "CREATED"; $0.changedAtUnixMs = 1_764_040_000_000; $0.actorID = "cust_7f3a9c21"
      },
      .with {
        $0.status = "PAID"; $0.changedAtUnixMs = 1_764_040_012_345; $0.actorID = "cust_7f3a9c21"
      },
      .with {
        $0.status = "FULFILLED"; $0.changedAtUnixMs = 1_764_040_013_001; $0.actorID = "marketplace-order"
      },
    ]
    $0.labels = ["campaign": "black-friday", "region": "eu-central", "channel": "marketplace"]
    $0.createdAtUnixMs = 1_764_040_000_000
    $0.updatedAtUnixMs = 1_764_040_013_001
    $0.paidAtUnixMs = 1_764_040_012_345
    $0.fulfilledAtUnixMs = 1_764_040_013_001
  }
}

/// Nanoseconds per call of `body`: the median of `rounds` rounds of `iterations` calls.
func measure(_ iterations: Int, rounds: Int = 7, _ body: () -> Void) -> Double {
  for _ in 0..<(iterations / 10) { body() }  // warm up
  var perCall: [Double] = []
  let clock = ContinuousClock()
  for _ in 0..<rounds {
    let elapsed = clock.measure { for _ in 0..<iterations { body() } }
    let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    perCall.append(nanoseconds / Double(iterations))
  }
  return perCall.sorted()[rounds / 2]
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

let order = realisticOrder()
let bytes = try order.serializedBytes()
let descriptor = Nest_Order_V1_Order._protobufC.descriptor
// The same message as protobuf-c's own struct, unpacked once with the system allocator.
let cOrder = bytes.withUnsafeBufferPointer {
  protobuf_c_message_unpack(descriptor, nil, $0.count, $0.baseAddress)!
}
precondition(protobuf_c_message_get_packed_size(cOrder) == bytes.count)

let iterations = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 100_000
Allocations.start()

// `nest-codec-bench N decode-only`: just the Swift decode loop, for a profiler.
if CommandLine.arguments.dropFirst(2).first == "decode-only" {
  for _ in 0..<iterations { blackHole(try! Nest_Order_V1_Order(serializedBytes: bytes)) }
  exit(0)
}

let pack = {
  let size = protobuf_c_message_get_packed_size(cOrder)
  let buffer = malloc(size)!.assumingMemoryBound(to: UInt8.self)
  blackHole(protobuf_c_message_pack(cOrder, buffer))
  free(buffer)
}
let unpack = {
  bytes.withUnsafeBufferPointer {
    let message = protobuf_c_message_unpack(descriptor, nil, $0.count, $0.baseAddress)
    protobuf_c_message_free_unpacked(message, nil)
  }
}
let encode = { blackHole(try! order.serializedBytes()) }
let decode = { blackHole(try! Nest_Order_V1_Order(serializedBytes: bytes)) }
let rawPack = measure(iterations, pack)
let rawUnpack = measure(iterations, unpack)
let swiftEncode = measure(iterations, encode)
let swiftDecode = measure(iterations, decode)
// Where decode time goes: the guard protobuf-c lacks, then unpack and conversion alone.
let estimate = try bytes.withUnsafeBytes { try Nest_Order_V1_Order._checkUntrustedBytes($0) }
let guardOnly = measure(iterations) {
  bytes.withUnsafeBytes { blackHole(try! Nest_Order_V1_Order._checkUntrustedBytes($0)) }
}
let unguardedDecode = measure(iterations) {
  bytes.withUnsafeBytes { blackHole(try! Nest_Order_V1_Order(_trustedBytes: $0, arenaCapacity: estimate)) }
}

func row(_ name: String, _ swift: Double, _ raw: Double) -> String {
  let pad = { (text: String, width: Int) in String(repeating: " ", count: max(0, width - text.count)) + text }
  return
    "| \(name) | \(pad(String(format: "%.0f", swift), 6)) ns | \(pad(String(format: "%.0f", raw), 6)) ns | \(String(format: "%.2f", swift / raw))x |"
}
print("nest.order.v1.Order, \(bytes.count) bytes on the wire; median of 7 rounds of \(iterations) calls")
print("| operation | Swift types | raw protobuf-c | ratio |")
print("|---|---:|---:|---:|")
print(row("encode (Swift) vs pack (C)", swiftEncode, rawPack))
print(row("decode (Swift) vs unpack + free (C)", swiftDecode, rawUnpack))
print(row("  of which: guard (depth, budget, UTF-8)", guardOnly, rawUnpack))
print(row("  of which: unpack + Swift conversion", unguardedDecode, rawUnpack))

// Allocations per call (malloc, calloc, realloc...), counted by the malloc interposer: a
// regression shows here as a changed count before it shows as time.
func allocations(_ body: () -> Void) -> String {
  let spent = Allocations.perCall(1000) { for _ in 0..<1000 { body() } }
  return String(format: "%.1f (%.0f B)", spent.mallocs, spent.bytes)
}
print("\nallocations per call (bytes asked for)")
print("| operation | Swift types | raw protobuf-c |")
print("|---|---:|---:|")
print("| encode vs pack | \(allocations(encode)) | \(allocations(pack)) |")
print("| decode vs unpack + free | \(allocations(decode)) | \(allocations(unpack)) |")
