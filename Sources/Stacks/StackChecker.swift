import Foundation
import Support

/// One thing wrong with a stack's files, reported with the file and (when there is one) the
/// variable, and what to do about it. Never contains a value from a .env file.
package struct Problem: Sendable, Encodable, Equatable, CustomStringConvertible {
    /// Path relative to the repository root (with `:line` when known), as it is.
    package var file: String
    package var variable: String?
    /// For a person: the names and paths in it escaped (NameEscape).
    package var message: String

    package var description: String {
        NameEscape.escape(file) + (variable.map { ": \(NameEscape.escape($0))" } ?? "") + ": " + message
    }
}

/// The result of checking one stack.
package struct StackCheck: Sendable {
    package var stack: String
    package var problems: [Problem]
    /// The parsed, interpolated compose file (nil when compose rejected it).
    package var project: ComposeProject?
    /// The env files passed to compose, in order (common first).
    package var envFiles: [String]
}

/// Checks stacks before they start: .env against templates, undeclared `${VAR}`, .env
/// permissions, `docker compose config`, and Homepage's addresses against published ports.
package struct StackChecker: Sendable {
    package var repo: StackRepository

    package init(repo: StackRepository) { self.repo = repo }

    /// Checks one stack.
    /// - Parameter homepage: the parsed services.yaml to compare ports with (nil: skip that check).
    package func check(_ stack: String, homepage: HomepageServices?) -> StackCheck {
        var problems: [Problem] = []
        let rel = { NameEscape.escape(repo.relative($0)) }   // in messages
        func add(_ file: String, _ variable: String?, _ message: String) {
            problems.append(Problem(file: repo.relative(file), variable: variable, message: message))
        }

        // 1. Templates and .env files.
        var declared: Set<String> = []
        var secrets: [String] = []
        var envFiles: [String] = []
        for (template, env) in [(repo.commonTemplate, repo.commonEnv), (repo.template(stack), repo.env(stack))] {
            let tpl: EnvFile
            do { tpl = try EnvFile.load(template) } catch {
                add(template, nil, FileManager.default.fileExists(atPath: template)
                    ? "\(error)" : "missing: every stack needs its .env.template committed (it may hold only comments)")
                continue
            }
            declared.formUnion(tpl.keys)
            guard FileManager.default.fileExists(atPath: env) else {
                add(env, nil, "missing: create it with `cp \(rel(template)) \(rel(env)) && chmod 600 \(rel(env))` and fill in every value")
                envFiles.append(template)   // still lets compose parse the file below
                continue
            }
            envFiles.append(env)
            if let mode = try? FileManager.default.attributesOfItem(atPath: env)[.posixPermissions] as? Int,
               mode & 0o077 != 0 {
                add(env, nil, String(format: "readable by group/other (mode %04o): it holds secrets; fix with `chmod 600 %@`", mode, rel(env)))
            }
            let values: EnvFile
            do { values = try EnvFile.load(env) } catch { add(env, nil, "\(error)"); continue }
            secrets += values.entries.map(\.value)
            for t in tpl.entries {
                guard let e = values.entry(t.key) else {
                    add(env, t.key, "missing (declared in \(rel(template)):\(t.line)): add `\(t.key)=...`")
                    continue
                }
                if e.value.isEmpty && !t.optional {
                    add(env + ":\(e.line)", t.key, "empty: give it a value (see the comment in \(rel(template)):\(t.line))")
                }
            }
        }

        // 2. Every ${VAR} in the compose file is declared in a template.
        let compose = repo.composeFile(stack)
        guard let text = try? String(contentsOfFile: compose, encoding: .utf8) else {
            add(compose, nil, "missing or unreadable")
            return StackCheck(stack: stack, problems: problems, project: nil, envFiles: envFiles)
        }
        var reported: Set<String> = []
        for ref in VariableReferences.scan(text) where !declared.contains(ref.name) && !reported.contains(ref.name) {
            reported.insert(ref.name)
            add(compose + ":\(ref.line)", ref.name,
                "used but not declared in \(rel(repo.commonTemplate)) or \(rel(repo.template(stack))): declare it there (secrets with an empty value) so hs-deploy can check it")
        }

        // 3. The authoritative parser.
        var project: ComposeProject?
        do {
            project = try DockerCompose(envFiles: envFiles, composeFile: compose).config()
        } catch {
            // DockerCompose's ToolError is escaped where it is made; anything else is escaped here.
            let text = (error as? ToolError)?.message ?? NameEscape.escape("\(error)")
            let message = Self.scrub(text, secrets: secrets).replacingOccurrences(of: NameEscape.escape(repo.root + "/"), with: "")
            add(compose, nil, message)
        }

        // 4. Homepage lists this stack's published ports, and only those.
        if let project, let homepage {
            problems += homepageProblems(stack, project: project, homepage: homepage)
        }
        return StackCheck(stack: stack, problems: problems, project: project, envFiles: envFiles)
    }

    /// Compares Homepage's group `stack` with the stack's published ports.
    package func homepageProblems(_ stack: String, project: ComposeProject, homepage: HomepageServices) -> [Problem] {
        let file = repo.relative(homepage.path)
        let composeFile = NameEscape.escape(repo.relative(repo.composeFile(stack))), shownStack = NameEscape.escape(stack)
        var problems: [Problem] = []
        let entries = homepage.entries.filter { $0.group.lowercased() == stack.lowercased() }
        let published = project.publishedPorts
        var listed: Set<Int> = []
        for e in entries {
            let entry = NameEscape.escape(e.group) + "/" + NameEscape.escape(e.name)
            var seen: Set<Int> = []
            for url in e.urls {
                guard let (host, port) = HomepageServices.hostPort(url) else {
                    problems.append(Problem(file: file, variable: nil, message: "\(entry): '\(NameEscape.escape(url))' is not an http://host:port URL"))
                    continue
                }
                guard host == stack.lowercased() else {
                    problems.append(Problem(file: file, variable: nil, message: "\(entry): '\(NameEscape.escape(url))' should use the stack's Tailscale name http://\(shownStack):PORT"))
                    continue
                }
                listed.insert(port)
                if seen.insert(port).inserted, !published.contains(port) {
                    problems.append(Problem(file: file, variable: nil, message: "\(entry): port \(port) is not published by \(composeFile) (published: \(published.sorted().map(String.init).joined(separator: ", ")))"))
                }
            }
        }
        for port in published.subtracting(listed).sorted() {
            let svc = project.services.values.first { $0.ports.contains { $0.published == port } }?.name ?? "?"
            problems.append(Problem(file: file, variable: nil, message: "group '\(NameEscape.escape(stack.capitalized))' has no entry for \(NameEscape.escape(svc)) on http://\(shownStack):\(port) (published by \(composeFile))"))
        }
        return problems
    }

    /// Homepage groups that name no stack.
    package func unknownHomepageGroups(_ homepage: HomepageServices, stacks: [String]) -> [Problem] {
        let known = Set(stacks.map { $0.lowercased() })
        return homepage.groups.filter { !known.contains($0.lowercased()) }.map {
            Problem(file: repo.relative(homepage.path), variable: nil,
                    message: "group '\(NameEscape.escape($0))' is not a stack (known: \(stacks.map(NameEscape.escape).joined(separator: ", "))); name groups after stacks")
        }
    }

    /// Replaces every .env value (6+ characters) in a message with `***`, as it is and as
    /// NameEscape shows it (a message may quote compose's text escaped).
    package static func scrub(_ message: String, secrets: [String]) -> String {
        var out = message
        for s in Set(secrets) where s.count >= 6 {
            out = out.replacingOccurrences(of: s, with: "***").replacingOccurrences(of: NameEscape.escape(s), with: "***")
        }
        return out
    }
}
