internal import COpenSSL
import Foundation
import Synchronization

/// A TLS session a client may offer again to skip the full handshake (RFC 8446 §2.2: a ticket the server
/// sealed with its own keys). Opaque; the server declines it after it rotates those keys.
public final class TLSSession: @unchecked Sendable {
    let pointer: OpaquePointer
    init(taking pointer: OpaquePointer) { self.pointer = pointer }
    deinit { SSL_SESSION_free(pointer) }
}

/// A request's failure, classified for the caller's error codes. `reason` never holds request bodies or headers.
public struct HTTPSClientError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// No TCP connection (refused, unreachable, no address).
        case connect
        /// The TLS handshake failed; `reason` says why (an untrusted or misnamed server certificate among them).
        case handshake
        /// The deadline passed.
        case timeout
        /// The caller cancelled.
        case cancelled
        /// The server's answer is not a well-formed HTTP/1.1 response within the size limit.
        case protocolError = "protocol"
    }
    public let kind: Kind
    public let reason: String
    public var description: String { "\(kind.rawValue): \(reason)" }
}

/// One HTTP/1.1 response.
public struct HTTPSResponse: Sendable {
    public let status: Int
    /// Header names lowercased, in arrival order.
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]
    /// Whether the connection resumed the offered session (no certificate exchange, no server signature).
    public let resumed: Bool
    /// The session to offer on the next connection to the same server (nil if the server issued none).
    public let session: TLSSession?

    public func header(_ name: String) -> String? {
        let name = name.lowercased()
        return headers.first { $0.name == name }?.value
    }
}

/// A minimal HTTPS/1.1 client on the system OpenSSL, one request per connection, with TLS session resumption:
/// what the agent and the benchmark's proxies need and AsyncHTTPClient (swift-nio-ssl) does not offer. The server
/// certificate is verified against `trust` and the URL's host (DNS name or IP address); TLS 1.2 at least.
///
/// Calls block the calling thread (non-blocking sockets under `poll`, so deadlines and cancellation hold); run
/// them off the concurrency pool (`perform` does).
public final class HTTPSClient: @unchecked Sendable {
    private let context: OpaquePointer
    public let maximumResponseBytes: Int

    /// OpenSSL writes to the socket with write(2): without this, a server closing the connection while a request
    /// is being written would end the whole process with SIGPIPE. Done once, for the process.
    private static let ignoreBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// - Parameter trust: PEM certificates: the roots a server chain must lead to.
    public init(trust: String, maximumResponseBytes: Int = 4 * 1024 * 1024) throws {
        _ = Self.ignoreBrokenPipes
        guard let method = TLS_client_method(), let context = SSL_CTX_new(method) else {
            throw OpenSSLError.drain(.operationFailed, "SSL_CTX_new")
        }
        self.context = context
        self.maximumResponseBytes = maximumResponseBytes
        guard copenssl_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "SSL_CTX_set_min_proto_version")
        }
        // AES-128-GCM with SHA-256 first, as Go's and BoringSSL's clients order it: OpenSSL's default puts
        // AES-256-GCM-SHA384 first, whose SHA-384 key schedule costs the server more per handshake (SHA-512
        // blocks have no hardware path on x86) for no gain in a one-request connection.
        guard
            SSL_CTX_set_ciphersuites(
                context, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") == 1
        else { throw OpenSSLError.drain(.operationFailed, "SSL_CTX_set_ciphersuites") }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        let store = SSL_CTX_get_cert_store(context)
        var added = 0
        try trust.utf8CString.withUnsafeBufferPointer { text in
            guard let bio = BIO_new_mem_buf(text.baseAddress, Int32(text.count - 1)) else {
                throw OpenSSLError.drain(.operationFailed, "BIO_new_mem_buf")
            }
            defer { BIO_free(bio) }
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) {
                defer { X509_free(certificate) }
                guard X509_STORE_add_cert(store, certificate) == 1 else {
                    throw OpenSSLError.drain(.invalidEncoding, "trust certificate not added")
                }
                added += 1
            }
            drainErrorQueue()  // the read past the last certificate leaves "no start line"
        }
        guard added > 0 else { throw OpenSSLError.drain(.invalidEncoding, "trust holds no PEM certificate") }
    }

    deinit { SSL_CTX_free(context) }

    /// Sends one request on a new connection (`Connection: close`), offering `session` if given.
    /// - Parameters:
    ///   - url: `https://host[:port]/path`
    ///   - headers: extra request headers; Host, Content-Length and Connection are set here.
    ///   - cancelled: polled at least every 100 ms; true ends the request with `.cancelled`.
    public func send(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8] = [],
        session: TLSSession? = nil, timeout: Duration, cancelled: @escaping () -> Bool = { false }
    ) throws -> HTTPSResponse {
        guard let parts = URLComponents(string: url), parts.scheme == "https", var host = parts.host, !host.isEmpty
        else { throw HTTPSClientError(kind: .connect, reason: "not an https URL: \(url)") }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = parts.port ?? 443
        var path = parts.percentEncodedPath.isEmpty ? "/" : parts.percentEncodedPath
        if let query = parts.percentEncodedQuery { path += "?" + query }
        let bracketed = host.contains(":") ? "[\(host)]" : host
        let authority = parts.port.map { "\(bracketed):\($0)" } ?? bracketed
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(authority)\r\n"
        if !body.isEmpty || method == "POST" || method == "PUT" { request += "Content-Length: \(body.count)\r\n" }
        for (name, value) in headers {
            // A line break in a header (a token file with a stray CR/LF) would smuggle headers of its own.
            guard !"\(name)\(value)".utf8.contains(where: { $0 == 13 || $0 == 10 }) else {
                throw HTTPSClientError(kind: .protocolError, reason: "header \(name) holds a line break")
            }
            request += "\(name): \(value)\r\n"
        }
        request += "Connection: close\r\n\r\n"
        let bytes = Array(request.utf8) + body

        var io = Connection(deadline: .now + timeout, cancelled: cancelled)
        defer { io.close() }
        try io.connect(host: host, port: port)

        guard let ssl = SSL_new(context) else { throw OpenSSLError.drain(.operationFailed, "SSL_new") }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, io.fd)
        if case .ip = GeneralName(host: host) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
        } else {
            copenssl_SSL_set_tlsext_host_name(ssl, host)
            SSL_set1_host(ssl, host)
        }
        if let session { SSL_set_session(ssl, session.pointer) }
        try io.drive(ssl, .handshake) { SSL_connect(ssl) }

        var written = 0
        while written < bytes.count {
            let count = try bytes[written...].withUnsafeBytes { chunk in
                try io.drive(ssl, .write) { SSL_write(ssl, chunk.baseAddress, Int32(chunk.count)) }
            }
            written += Int(count)
        }
        var reader = ResponseReader(limit: maximumResponseBytes)
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while !reader.isComplete {
            let count = try buffer.withUnsafeMutableBytes { raw in
                try io.drive(ssl, .read, endOfStream: 0) { SSL_read(ssl, raw.baseAddress, Int32(raw.count)) }
            }
            if count == 0 {
                try reader.finish()
                break
            }
            try reader.append(buffer[0..<Int(count)])
        }
        // A TLS 1.3 server sends its tickets after the handshake: by now they have been read.
        var next: TLSSession? = nil
        if let latest = SSL_get1_session(ssl) {
            if SSL_SESSION_is_resumable(latest) == 1 {
                next = TLSSession(taking: latest)
            } else {
                SSL_SESSION_free(latest)
            }
        }
        let resumed = SSL_session_reused(ssl) == 1
        SSL_shutdown(ssl)  // best effort: one close_notify, no wait for the peer's
        return HTTPSResponse(
            status: reader.status, headers: reader.headers, body: reader.body, resumed: resumed, session: next)
    }

    /// `send` on a thread outside the concurrency pool; task cancellation ends it within 100 ms.
    public func perform(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8] = [],
        session: TLSSession? = nil, timeout: Duration
    ) async throws -> HTTPSResponse {
        let flag = CancelFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                Thread.detachNewThread {
                    continuation.resume(
                        with: Result {
                            try self.send(
                                method, url, headers: headers, body: body, session: session, timeout: timeout,
                                cancelled: { flag.value.load(ordering: .relaxed) })
                        })
                }
            }
        } onCancel: {
            flag.value.store(true, ordering: .relaxed)
        }
    }
}

private final class CancelFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// A non-blocking TCP socket with a deadline, and the OpenSSL retry loop over it.
private struct Connection {
    var fd: Int32 = -1
    let deadline: ContinuousClock.Instant
    let cancelled: () -> Bool

    init(deadline: ContinuousClock.Instant, cancelled: @escaping () -> Bool) {
        self.deadline = deadline
        self.cancelled = cancelled
    }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    mutating func connect(host: String, port: Int) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw HTTPSClientError(kind: .connect, reason: "\(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var lastError = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let address = next {
            next = address.pointee.ai_next
            let socket = Glibc.socket(
                address.pointee.ai_family,
                address.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue),
                address.pointee.ai_protocol)
            guard socket >= 0 else { continue }
            var one: Int32 = 1
            setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if Glibc.connect(socket, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 || errno == EINPROGRESS {
                fd = socket
                do {
                    try wait(for: Int16(POLLOUT))
                } catch let error as HTTPSClientError where error.kind == .connect {
                    close()
                    lastError = error.reason
                    continue
                }
                var code: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(socket, SOL_SOCKET, SO_ERROR, &code, &length)
                if code == 0 { return }
                lastError = String(cString: strerror(code))
                close()
            } else {
                lastError = String(cString: strerror(errno))
                Glibc.close(socket)
            }
        }
        throw HTTPSClientError(kind: .connect, reason: "\(host):\(port): \(lastError)")
    }

    /// Waits until `fd` is ready for `events`, the deadline passes or the caller cancels.
    func wait(for events: Int16) throws {
        while true {
            if cancelled() { throw HTTPSClientError(kind: .cancelled, reason: "cancelled") }
            let left = deadline - .now
            guard left > .zero else { throw HTTPSClientError(kind: .timeout, reason: "no answer in time") }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let slice = min(left, .milliseconds(100))
            let milliseconds = Int32(
                slice.components.seconds * 1000 + slice.components.attoseconds / 1_000_000_000_000_000)
            let ready = poll(&entry, 1, max(milliseconds, 1))
            if ready > 0 {
                if entry.revents & Int16(POLLNVAL) != 0 {
                    throw HTTPSClientError(kind: .connect, reason: "socket closed")
                }
                return
            }
            if ready < 0 && errno != EINTR {
                throw HTTPSClientError(kind: .connect, reason: String(cString: strerror(errno)))
            }
        }
    }

    enum Step: String {
        case handshake, write, read
        /// A handshake failure is the server's certificate or TLS; any later one is the conversation's.
        var failure: HTTPSClientError.Kind { self == .handshake ? .handshake : .protocolError }
    }

    /// Runs an OpenSSL I/O call until it succeeds, waiting on the socket as it asks. A clean end of stream (a
    /// close_notify, or a close without one: the server hung up after its answer) returns `endOfStream` when
    /// given.
    @discardableResult
    func drive(_ ssl: OpaquePointer, _ step: Step, endOfStream: Int32? = nil, _ call: () -> Int32) throws -> Int32 {
        while true {
            ERR_clear_error()
            let result = call()
            if result > 0 { return result }
            let code = SSL_get_error(ssl, result)
            if code == SSL_ERROR_WANT_READ {
                try wait(for: Int16(POLLIN))
                continue
            }
            if code == SSL_ERROR_WANT_WRITE {
                try wait(for: Int16(POLLOUT))
                continue
            }
            if code == SSL_ERROR_ZERO_RETURN || (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
                if let endOfStream { return endOfStream }
                throw HTTPSClientError(kind: step.failure, reason: "\(step.rawValue): connection closed")
            }
            let verify = SSL_get_verify_result(ssl)
            let reason =
                verify != X509_V_OK
                ? "certificate: " + String(cString: X509_verify_cert_error_string(verify))
                : drainErrorQueue().joined(separator: "; ")
            drainErrorQueue()
            throw HTTPSClientError(kind: step.failure, reason: "\(step.rawValue): \(reason)")
        }
    }
}

/// Parses an HTTP/1.1 response as it arrives: status line, headers, then a body framed by Content-Length,
/// chunked transfer coding, or the end of the connection.
struct ResponseReader {
    let limit: Int
    private var data: [UInt8] = []
    private var headerEnd: Int? = nil
    private var contentLength: Int? = nil
    private var chunked = false
    private(set) var status = 0
    private(set) var headers: [(name: String, value: String)] = []
    private(set) var body: [UInt8] = []
    private(set) var isComplete = false

    init(limit: Int) { self.limit = limit }

    mutating func append(_ bytes: ArraySlice<UInt8>) throws {
        data += bytes
        guard data.count <= limit + 64 * 1024 else {
            throw HTTPSClientError(kind: .protocolError, reason: "response larger than \(limit) bytes")
        }
        if headerEnd == nil, let end = data.firstRange(of: [13, 10, 13, 10]) {
            headerEnd = end.upperBound
            try parseHead(data[..<end.lowerBound])
        }
        if let headerEnd, let contentLength, data.count - headerEnd >= contentLength {
            body = Array(data[headerEnd..<(headerEnd + contentLength)])
            isComplete = true
        } else if let headerEnd, chunked, let decoded = try Self.dechunk(data[headerEnd...]) {
            body = decoded
            isComplete = true
        }
    }

    /// The connection ended.
    mutating func finish() throws {
        guard let headerEnd else {
            throw HTTPSClientError(kind: .protocolError, reason: "connection closed before the headers")
        }
        guard contentLength == nil, !chunked else {
            throw HTTPSClientError(kind: .protocolError, reason: "connection closed before the end of the body")
        }
        body = Array(data[headerEnd...])
        isComplete = true
    }

    private mutating func parseHead(_ head: ArraySlice<UInt8>) throws {
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n")
        let statusLine = lines[0].split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let code = Int(statusLine[1]) else {
            throw HTTPSClientError(kind: .protocolError, reason: "not an HTTP/1.1 status line")
        }
        status = code
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((name, value))
            if name == "content-length" {
                guard let length = Int(value), length >= 0, length <= limit else {
                    throw HTTPSClientError(kind: .protocolError, reason: "bad or too large Content-Length")
                }
                contentLength = length
            }
            if name == "transfer-encoding", value.lowercased().contains("chunked") { chunked = true }
        }
        if chunked { contentLength = nil }
        if status == 204 || status == 304 { contentLength = 0 }
    }

    /// The body of a complete chunked message, or nil while more is to come.
    private static func dechunk(_ bytes: ArraySlice<UInt8>) throws -> [UInt8]? {
        var out: [UInt8] = []
        var index = bytes.startIndex
        while true {
            guard let lineEnd = bytes[index...].firstRange(of: [13, 10]) else { return nil }
            let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16), size >= 0 else {
                throw HTTPSClientError(kind: .protocolError, reason: "bad chunk size")
            }
            let start = lineEnd.upperBound
            if size == 0 { return bytes[start...].firstRange(of: [13, 10]) == nil ? nil : out }
            guard bytes.endIndex - start >= size + 2 else { return nil }
            out += bytes[start..<(start + size)]
            index = start + size + 2
        }
    }
}
