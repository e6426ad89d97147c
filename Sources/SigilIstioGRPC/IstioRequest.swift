import SwiftProtobuf

// What Sigil reads from a CreateCertificate request, kept beside the generated types so that the fuzzer
// (`sigil-fuzz istio`) runs exactly the server's decoding without linking the server.

extension Istio_V1_Auth_IstioCertificateRequest {
    /// The deepest nesting of `metadata` accepted (a Struct of Structs); Istio's agent sends a flat one.
    public static let maxMetadataDepth = 16

    /// The request of `bytes` (binary protobuf) as the server reads it: unknown fields ignored, `metadata`
    /// nested at most `maxMetadataDepth` deep.
    /// - Throws: `SwiftProtobuf.BinaryDecodingError` when `bytes` is not such a request.
    public init(untrusted bytes: [UInt8]) throws {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = Self.maxMetadataDepth
        options.discardUnknownFields = true
        try self.init(serializedBytes: bytes, options: options)
    }

    /// `metadata.ClusterID` when it is a non-empty string.
    public var metadataClusterID: String? {
        guard case .stringValue(let value)? = metadata.fields["ClusterID"]?.kind, !value.isEmpty else { return nil }
        return value
    }

    /// Whether the caller asks for another workload's certificate (ztunnel's `ImpersonatedIdentity`).
    public var impersonates: Bool { metadata.fields["ImpersonatedIdentity"] != nil }
}
