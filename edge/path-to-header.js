// wshub EdgePath: the CloudFront viewer-request function (runtime cloudfront-js-2.0) in front
// of the WebSocket API. API Gateway WebSocket APIs take no path beyond the stage, so this moves
// the path the client connected to (wss://EDGE/ocpp/CP001) into the x-wshub-path header and
// sends the request to the stage itself (the origin path). A client-sent x-wshub-path is
// always replaced. src/edge.rs mirrors this for the local hub; tests/edge.rs runs this file
// under Node against the Rust mirror.
function handler(event) {
  var request = event.request;
  var path = request.uri;
  delete request.headers['x-wshub-path'];
  if (path.length > 1024) {
    return { statusCode: 414, statusDescription: 'URI Too Long' };
  }
  if (path !== '/') {
    request.headers['x-wshub-path'] = { value: path };
  }
  request.uri = '/';
  return request;
}
