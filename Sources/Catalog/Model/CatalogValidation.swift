// Field-level checks of catalog requests: every problem found at once, each with its
// field path, as INVALID_ARGUMENT. Pure.
import Foundation
public import NestDomain
public import NestProto

public enum CatalogValidation {
  static func name(_ value: String, field: String, into violations: inout [DomainError.Violation]) {
    if value.trimmingCharacters(in: .whitespaces).isEmpty {
      violations.append(.init(field: field, description: "must not be empty"))
    } else if value.count > 200 {
      violations.append(.init(field: field, description: "must be at most 200 characters"))
    }
  }

  static func serviceType(_ type: Nest_Common_V1_ServiceType, into violations: inout [DomainError.Violation]) {
    if type != .private && type != .fullyManaged {
      violations.append(.init(field: "type", description: "must be PRIVATE or FULLY_MANAGED"))
    }
  }

  static func package(
    _ package: Nest_Catalog_V1_DeploymentPackage?, field: String, into violations: inout [DomainError.Violation]
  ) {
    guard let package else {
      violations.append(.init(field: field, description: "is required"))
      return
    }
    if package.artifactRef.isEmpty {
      violations.append(.init(field: "\(field).artifact_ref", description: "must not be empty"))
    }
    let hex = package.checksumSha256
    if hex.count != 64 || !hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
      violations.append(
        .init(field: "\(field).checksum_sha256", description: "must be 64 lowercase hexadecimal characters"))
    }
  }

  static func parameterSets(_ sets: [Nest_Catalog_V1_ParameterSet], into violations: inout [DomainError.Violation]) {
    var names: Set<String> = []
    for (index, set) in sets.enumerated() {
      if set.name.isEmpty {
        violations.append(.init(field: "parameter_sets[\(index)].name", description: "must not be empty"))
      } else if !names.insert(set.name).inserted {
        violations.append(.init(field: "parameter_sets[\(index)].name", description: "\"\(set.name)\" is used twice"))
      }
    }
  }

  static func additions(
    _ additions: [Nest_Catalog_V1_DeploymentAddition], into violations: inout [DomainError.Violation]
  ) {
    for (index, addition) in additions.enumerated() {
      if addition.name.isEmpty {
        violations.append(.init(field: "deployment_additions[\(index)].name", description: "must not be empty"))
      }
      if addition.deploymentPackage != nil {
        package(
          addition.deploymentPackage, field: "deployment_additions[\(index)].deployment_package", into: &violations)
      }
    }
  }

  static func id(_ value: String, field: String, into violations: inout [DomainError.Violation]) {
    if value.isEmpty { violations.append(.init(field: field, description: "must not be empty")) }
  }

  static func finish(_ violations: [DomainError.Violation]) throws(DomainError) {
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  public static func check(_ request: Nest_Catalog_V1_CreateServiceRequest) throws(DomainError) {
    var violations: [DomainError.Violation] = []
    name(request.name, field: "name", into: &violations)
    serviceType(request.type, into: &violations)
    package(request.deploymentPackage, field: "deployment_package", into: &violations)
    parameterSets(request.parameterSets, into: &violations)
    try finish(violations)
  }

  public static func check(_ request: Nest_Catalog_V1_CreateDerivedServiceRequest) throws(DomainError) {
    var violations: [DomainError.Violation] = []
    id(request.baseServiceID, field: "base_service_id", into: &violations)
    name(request.name, field: "name", into: &violations)
    serviceType(request.type, into: &violations)
    additions(request.deploymentAdditions, into: &violations)
    parameterSets(request.parameterSets, into: &violations)
    try finish(violations)
  }

  public static func check(_ request: Nest_Catalog_V1_CreateServiceVersionRequest, derived: Bool) throws(DomainError) {
    var violations: [DomainError.Violation] = []
    id(request.serviceID, field: "service_id", into: &violations)
    if derived {
      if request.deploymentPackage != nil {
        violations.append(
          .init(
            field: "deployment_package",
            description: "a derived service uses its base's package; add deployment_additions"))
      }
    } else {
      package(request.deploymentPackage, field: "deployment_package", into: &violations)
    }
    additions(request.deploymentAdditions, into: &violations)
    parameterSets(request.parameterSets, into: &violations)
    try finish(violations)
  }
}
