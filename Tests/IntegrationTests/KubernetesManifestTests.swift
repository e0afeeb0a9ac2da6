// deploy/kubernetes as `kubectl kustomize` renders it, read by Tests/Python/check_manifests.py:
// every document valid against the Kubernetes schemas (kubernetes-validate), the five
// services one-replica StatefulSets with a volume for their database, gRPC probes on their
// HTTP/2 port, scrape annotations, resources and a disruption budget, the backup CronJob
// reaching every admin port, and no shared secret in production.
import Foundation
import NestProtoTesting
import Testing

@Suite("Kubernetes manifests")
struct KubernetesManifestTests {
  @Test("both overlays render, validate and hold what an operator relies on")
  func manifests() throws {
    try #require(
      FileManager.default.isExecutableFile(atPath: grpcPython.path), "no \(grpcPython.path): run scripts/bootstrap")
    let result = try run([
      grpcPython.path, Repository.path("Tests/Python/check_manifests.py").path, Repository.root.path,
    ])
    print(result.stdoutText)
    #expect(result.status == 0, "\(result.stdoutText)\(result.stderr)")
    #expect(result.stdoutText.contains("manifests ok"))
  }
}
