// The front door's one script (njs, loaded by door.conf): which router location a completion takes.
//
// A stream and a whole answer need different first-byte timeouts. A live backend sends a stream's headers once its
// engine shows progress (vllm/backend_guard.py), so a stream that has sent nothing for the first-token timeout is on
// a hung backend and is sent again, to another one. A whole answer sends nothing until it is done, so only the long timeout fits it. nginx
// cannot see `stream` without reading the body, which it has already read whole (proxy_request_buffering) when
// this runs.
function lane(r) {
    var stream = false;
    try {
        stream = JSON.parse(r.requestText).stream === true;
    } catch (e) {
        // Not JSON (the backend answers its 400), or a body nginx kept in a file (over client_body_buffer_size):
        // the whole-answer lane, whose only difference is the longer timeout.
    }
    r.internalRedirect(stream ? '@router_stream' : '@router_whole');
}

export default { lane };
