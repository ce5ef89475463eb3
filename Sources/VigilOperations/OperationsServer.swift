import NIOCore
import NIOHTTP1
import NIOPosix

/// A small HTTP/1.1 server on one event-loop thread of its own (SwiftNIO): `GET` (and `HEAD`) of a fixed set
/// of paths, and `POST` of another, each answered by a closure that runs on that thread and must not block.
/// Nothing else: no request bodies read, no keep-alive beyond what HTTP/1.1 clients expect, no TLS (bind it to localhost or a
/// private network, or put a proxy in front).
public final class OperationsServer: Sendable {
    /// An answer: status, content type, body.
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var contentType: String
        public var body: [UInt8]

        public init(_ status: HTTPResponseStatus, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }

        public init(_ status: HTTPResponseStatus, _ text: String) {
            self.init(status, body: Array((text + "\n").utf8))
        }
    }

    public typealias Route = @Sendable () -> Response

    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    /// The port bound (useful when asked for port 0).
    public let port: Int

    /// Binds and starts serving `routes` (path to answer) to GET and HEAD, and `postRoutes` to POST (the
    /// request body is ignored). Throws when the address cannot be bound.
    public init(host: String, port: Int, routes: [String: Route], postRoutes: [String: Route] = [:]) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(RouteHandler(routes: routes, postRoutes: postRoutes))
                }
            }
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.port = channel.localAddress?.port ?? port
    }

    /// Stops listening, closes connections and the event loop.
    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Answers each request from its route; 404 for an unknown path, 405 for a method the path does not take.
private final class RouteHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let routes: [String: OperationsServer.Route]
    let postRoutes: [String: OperationsServer.Route]
    private var head: HTTPRequestHead?

    init(routes: [String: OperationsServer.Route], postRoutes: [String: OperationsServer.Route]) {
        self.routes = routes
        self.postRoutes = postRoutes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body:
            break
        case .end:
            guard let h = head else { return }
            head = nil
            respond(context: context, to: h)
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        let path = String(request.uri.prefix { $0 != "?" })
        let response: OperationsServer.Response
        if request.method == .POST, let route = postRoutes[path] {
            response = route()
        } else if postRoutes[path] != nil {
            response = .init(.methodNotAllowed, "only POST")
        } else if request.method != .GET && request.method != .HEAD {
            response = .init(.methodNotAllowed, "only GET and HEAD")
        } else if let route = routes[path] {
            response = route()
        } else {
            response = .init(.notFound, "not found; try /metrics, /healthz or /readyz")
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Cache-Control", value: "no-store")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
