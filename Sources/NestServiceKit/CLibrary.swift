// The C library's functions that Swift's Glibc module leaves out (they sit behind feature
// macros or in headers it does not import), looked up by name in the running process.
import Foundation

enum CLibrary {
  /// The function `name` as `type`, or nil where this C library has none.
  static func function<Function>(_ name: String, as type: Function.Type) -> Function? {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), name) else { return nil }
    return unsafeBitCast(symbol, to: type)
  }
}
