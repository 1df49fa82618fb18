// A libFuzzer target for the agent's configuration parser (Sources/OTAAgent/ConfigurationParser.swift),
// built by scripts/fuzz together with the few files the parser needs.
//
// Input: lines. A line starting with '$' is an environment entry ("$NAME=VALUE"), any other line
// is one command-line argument. The parser must never crash, must answer the same twice, and
// what it accepts must be usable: every bound at least one, every deadline positive, the
// required paths present, the Dice-Auth client certificate and key given together. What it
// refuses is a configuration error with a message.

import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigurationParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var arguments: [String] = []
    var environment: [String: String] = [:]
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("$"), let equals = line.firstIndex(of: "=") {
            environment[String(line[line.index(after: line.startIndex)..<equals])] =
                String(line[line.index(after: equals)...])
        } else {
            arguments.append(String(line))
        }
    }

    let first = parse(arguments, environment)
    let (once, again) = (describe(first), describe(parse(arguments, environment)))
    check(once == again, "two parses of the same input differ:\n\(once)\n\(again)")
    switch first {
    case .failure(let error):
        check(error.kind == .configuration, "a parse failed with kind \(error.kind)")
        check(!error.message.isEmpty, "a configuration error without a message")
    case .success(.run(let configuration)):
        checkUsable(configuration)
    case .success:
        break
    }
    return 0
}

private func parse(_ arguments: [String], _ environment: [String: String])
    -> Result<ConfigurationParser.Request, AgentError>
{
    do {
        return .success(try ConfigurationParser.parse(arguments: arguments, environment: environment))
    } catch {
        return .failure(error)
    }
}

/// One parse's result as text, so that two parses can be compared.
private func describe(_ parsed: Result<ConfigurationParser.Request, AgentError>) -> String {
    switch parsed {
    case .success(let request): String(reflecting: request)
    case .failure(let error): "error \(error.kind): \(error.message)"
    }
}

private func checkUsable(_ configuration: AgentConfiguration) {
    check(!configuration.imagePath.isEmpty && !configuration.certificatePath.isEmpty
              && !configuration.keyPath.isEmpty && !configuration.diceAuthURL.isEmpty,
          "a required setting accepted empty")
    check(configuration.maxConcurrent >= 1 && configuration.maxHandshakes >= 1
              && configuration.maxPerAddress >= 1 && configuration.maxUnattested >= 1
              && configuration.diceAuth.concurrency >= 1,
          "a bound below one accepted")
    let deadlines = configuration.deadlines
    let all = [deadlines.handshake, deadlines.certificate, deadlines.diceAuth, deadlines.stall,
               deadlines.transfer, deadlines.close, configuration.gracePeriod]
    check(all.allSatisfy { $0 >= .zero }, "a negative deadline accepted: \(all)")
    check([deadlines.handshake, deadlines.certificate, deadlines.diceAuth, deadlines.stall,
           deadlines.transfer, deadlines.close].allSatisfy { $0 > .zero },
          "a zero deadline accepted: \(all)")
    if let timeout = configuration.timeout {
        check(timeout > .zero, "a run timeout of \(timeout) accepted")
    }
    check((configuration.diceAuth.clientCertificatePath == nil) == (configuration.diceAuth.clientKeyPath == nil),
          "a Dice-Auth client certificate without its key, or the reverse, accepted")
}

private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    FileHandle.standardError.write(Data("config_parser invariant broken: \(message())\n".utf8))
    abort()
}
