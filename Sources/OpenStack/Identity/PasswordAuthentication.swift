/// The body of Keystone's `POST /v3/auth/tokens` for the password method, scoped to a project
/// when one is configured. Encoding it puts the password in the clear: it goes to the wire and
/// nowhere else (the type itself prints redacted, as its password is a `Secret`).
struct PasswordAuthentication: Encodable {
    struct Auth: Encodable {
        var identity: Identity
        var scope: Scope?
    }

    struct Identity: Encodable {
        var methods = ["password"]
        var password: Password
    }

    struct Password: Encodable {
        var user: User
    }

    struct User: Encodable {
        var id: String?
        var name: String?
        var domain: Reference?
        var password: Secret
    }

    struct Scope: Encodable {
        var project: Project
    }

    struct Project: Encodable {
        var id: String?
        var name: String?
        var domain: Reference?
    }

    /// A domain by id or by name.
    struct Reference: Encodable {
        var id: String?
        var name: String?
    }

    var auth: Auth

    init(_ configuration: CloudConfiguration) {
        let user = configuration.user
        let userDomain = user.id == nil ? Reference(id: user.domainID, name: user.domainID == nil ? user.domainName : nil) : nil
        var scope: Scope?
        if let project = configuration.project {
            let domain = project.id == nil ? Reference(id: project.domainID, name: project.domainID == nil ? project.domainName : nil) : nil
            scope = Scope(project: Project(id: project.id, name: project.name, domain: domain))
        }
        auth = Auth(identity: Identity(password: Password(user: User(id: user.id, name: user.name, domain: userDomain,
                                                                     password: configuration.password))),
                    scope: scope)
    }
}
