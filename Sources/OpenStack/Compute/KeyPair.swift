/// A Nova key pair. A generated one comes back once with its private key, which is a `Secret`
/// (never printed). Key pairs belong to a user: an admin reads or creates another user's with
/// `user_id` (microversion 2.10), which is how a restore recreates the owner's key pair.
public struct KeyPair: Sendable, Codable, Equatable {
    public var name: String
    public var publicKey: String
    public var fingerprint: String?
    /// "ssh" or "x509" (microversion 2.2).
    public var type: String?
    public var userID: String?
    public var createdAt: String?
    /// Only in the answer to a create without a public key.
    public var privateKey: Secret?

    public init(name: String, publicKey: String, fingerprint: String? = nil, type: String? = nil, userID: String? = nil,
                createdAt: String? = nil, privateKey: Secret? = nil) {
        self.name = name
        self.publicKey = publicKey
        self.fingerprint = fingerprint
        self.type = type
        self.userID = userID
        self.createdAt = createdAt
        self.privateKey = privateKey
    }

    enum CodingKeys: String, CodingKey {
        case name, fingerprint, type
        case publicKey = "public_key"
        case userID = "user_id"
        case createdAt = "created_at"
        case privateKey = "private_key"
    }
}

/// The body of `POST /os-keypairs`.
struct KeyPairCreate: Encodable {
    struct Body: Encodable {
        let name: String
        let public_key: String?
        let type: String?
        let user_id: String?
    }

    let keypair: Body
}
