import Foundation

extension KeystoneSession {
    /// The names of the roles `userID` holds on `projectID`, directly or through groups and
    /// inherited assignments (Keystone's effective role assignments). Needs a token allowed to
    /// list assignments (an admin's, or a reader's under the default policies).
    public func roles(ofUser userID: String, onProject projectID: String) throws -> [String] {
        let base = try configuration.identityURL.appendingPathComponent("role_assignments")
        let url = try QueryString.url(base, [("user.id", userID), ("scope.project.id", projectID), ("effective", nil), ("include_names", nil)])
        let response = try send(HTTPRequest(.get, url, headers: ["Accept": "application/json"]))
        struct Envelope: Decodable {
            struct Assignment: Decodable {
                struct Role: Decodable { let id: String; let name: String? }
                let role: Role
            }
            let role_assignments: [Assignment]
        }
        do {
            return try JSONDecoder().decode(Envelope.self, from: response.body).role_assignments.map { $0.role.name ?? $0.role.id }
        } catch {
            throw OpenStackError.invalidResponse(service: "Keystone", url: Redaction.url(url.absoluteString),
                                                 reason: DecodingProblem.describe(error))
        }
    }

    /// Whether `userID` is a member of `projectID` (holds any role on it): Lifeboat's rule for
    /// restores, where the restoring user must belong to the target project.
    public func isMember(user userID: String, ofProject projectID: String) throws -> Bool {
        try !roles(ofUser: userID, onProject: projectID).isEmpty
    }
}
