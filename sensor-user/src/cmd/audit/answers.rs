//! What the mock LLM API answers: enough of the Anthropic Messages API, OpenAI Chat Completions
//! and Responses, and the Gemini API (`generateContent`, `streamGenerateContent`, `countTokens`),
//! streaming (SSE) or not, for a CLI to complete a one-shot prompt. Every model answer says
//! "ok"; a request for JSON gets an object made from its schema. Anything else gets a harmless
//! `404` (or an empty `200` to `HEAD`).

use serde_json::{json, Value};

/// The text every model answer carries.
pub const TEXT: &str = "ok";

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// `anthropic.messages`, `openai.chat`, `openai.responses`, `gemini.generate`, … or `other`.
    pub api: &'static str,
}

impl Answer {
    /// A model was asked (and answered): the request counts as an API call.
    pub fn is_llm_call(&self) -> bool {
        matches!(
            self.api,
            "anthropic.messages"
                | "openai.chat"
                | "openai.responses"
                | "openai.completions"
                | "gemini.generate"
        )
    }
}

fn json_answer(api: &'static str, v: Value) -> Answer {
    Answer { status: 200, content_type: "application/json", body: v.to_string(), api }
}

fn sse(api: &'static str, events: &[(Option<&str>, Value)], done: bool) -> Answer {
    let mut body = String::new();
    for (event, data) in events {
        if let Some(e) = event {
            body.push_str(&format!("event: {e}\n"));
        }
        body.push_str(&format!("data: {data}\n\n"));
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    Answer { status: 200, content_type: "text/event-stream", body, api }
}

/// An example value for a JSON schema (OpenAPI-style `OBJECT`/`STRING` types too).
pub fn sample(schema: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array).and_then(|a| a.first()) {
        return e.clone();
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema.get(k).and_then(Value::as_array).and_then(|a| a.first()) {
            return sample(first, depth + 1);
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(Value::Array(a)) => {
            a.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("string").to_ascii_lowercase()
        }
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "string".into(),
    };
    match ty.as_str() {
        "object" => {
            let mut m = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    m.insert(k.clone(), sample(v, depth + 1));
                }
            }
            Value::Object(m)
        }
        "array" => Value::Array(Vec::new()),
        "integer" | "number" => {
            let min = schema.get("minimum").and_then(Value::as_f64).unwrap_or(1.0).max(1.0);
            json!(min as i64)
        }
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!(TEXT),
    }
}

fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

/// The answer to `method path` with `body`.
pub fn answer(method: &str, path: &str, body: &[u8]) -> Answer {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if method == "HEAD" {
        return Answer { status: 200, content_type: "text/plain", body: String::new(), api: "other" };
    }
    let model = json.get("model").and_then(Value::as_str).unwrap_or("mock-model").to_string();
    if method == "POST" && route.ends_with("/messages/count_tokens") {
        return json_answer("anthropic.count_tokens", json!({"input_tokens": 1}));
    }
    if method == "POST" && route.ends_with("/messages") {
        return anthropic(&json, &model);
    }
    if method == "POST" && route.ends_with("/chat/completions") {
        return openai_chat(&json, &model);
    }
    if method == "POST" && route.ends_with("/responses") {
        return openai_responses(&json, &model);
    }
    if method == "POST" && route.ends_with("/completions") {
        return json_answer(
            "openai.completions",
            json!({"id":"cmpl-mock","object":"text_completion","created":0,"model":model,
                   "choices":[{"index":0,"text":TEXT,"finish_reason":"stop","logprobs":null}],
                   "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}),
        );
    }
    if let Some((_, verb)) = route.rsplit_once(':') {
        if route.contains("/models/") {
            match verb {
                "generateContent" => return json_answer("gemini.generate", gemini_candidate(&json)),
                "streamGenerateContent" => {
                    let c = gemini_candidate(&json);
                    if query.split('&').any(|p| p == "alt=sse") {
                        return sse("gemini.generate", &[(None, c)], false);
                    }
                    return json_answer("gemini.generate", json!([c]));
                }
                "countTokens" => return json_answer("gemini.count_tokens", json!({"totalTokens": 1})),
                "embedContent" => {
                    return json_answer("gemini.embed", json!({"embedding": {"values": [0.0, 0.0, 0.0]}}))
                }
                _ => {}
            }
        }
    }
    if method == "GET" && (route.ends_with("/models") || route.ends_with("/v1/models")) {
        return json_answer(
            "models",
            json!({"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"aiwatch-audit"}],
                   "models":[{"name":"models/mock-model"}]}),
        );
    }
    Answer {
        status: 404,
        content_type: "application/json",
        body: json!({"type":"error","error":{"type":"not_found_error","message":"not found (aiwatch audit mock)"}})
            .to_string(),
        api: "other",
    }
}

fn anthropic(req: &Value, model: &str) -> Answer {
    let msg = json!({"id":"msg_aiwatch_audit","type":"message","role":"assistant","model":model,
                     "content":[{"type":"text","text":TEXT}],"stop_reason":"end_turn","stop_sequence":null,
                     "usage":{"input_tokens":1,"output_tokens":1}});
    if !wants_stream(req) {
        return json_answer("anthropic.messages", msg);
    }
    let mut start = msg.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    sse(
        "anthropic.messages",
        &[
            (Some("message_start"), json!({"type":"message_start","message":start})),
            (
                Some("content_block_start"),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":TEXT}}),
            ),
            (Some("content_block_stop"), json!({"type":"content_block_stop","index":0})),
            (
                Some("message_delta"),
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":1}}),
            ),
            (Some("message_stop"), json!({"type":"message_stop"})),
        ],
        false,
    )
}

/// The text of an OpenAI answer: "ok", or an object for a JSON schema response format.
fn openai_text(format: Option<&Value>) -> String {
    match format {
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_schema") => {
            let schema = f.get("json_schema").and_then(|j| j.get("schema")).or_else(|| f.get("schema"));
            schema.map_or_else(|| "{}".to_string(), |s| sample(s, 0).to_string())
        }
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_object") => "{}".to_string(),
        _ => TEXT.to_string(),
    }
}

fn openai_chat(req: &Value, model: &str) -> Answer {
    let text = openai_text(req.get("response_format"));
    if !wants_stream(req) {
        return json_answer(
            "openai.chat",
            json!({"id":"chatcmpl-aiwatch-audit","object":"chat.completion","created":0,"model":model,
                   "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}],
                   "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id":"chatcmpl-aiwatch-audit","object":"chat.completion.chunk","created":0,"model":model,
               "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
    };
    let mut last = chunk(json!({}), json!("stop"));
    last["usage"] = json!({"prompt_tokens":1,"completion_tokens":1,"total_tokens":2});
    sse(
        "openai.chat",
        &[
            (None, chunk(json!({"role":"assistant","content":""}), Value::Null)),
            (None, chunk(json!({"content":text}), Value::Null)),
            (None, last),
        ],
        true,
    )
}

fn openai_responses(req: &Value, model: &str) -> Answer {
    let text = openai_text(req.get("text").and_then(|t| t.get("format")));
    let item = json!({"id":"msg_aiwatch_audit","type":"message","status":"completed","role":"assistant",
                      "content":[{"type":"output_text","text":text,"annotations":[]}]});
    let response = |status: &str, output: Value| {
        json!({"id":"resp_aiwatch_audit","object":"response","created_at":0,"status":status,"model":model,
               "output":output,"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2,
               "input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":0}}})
    };
    if !wants_stream(req) {
        let mut r = response("completed", json!([item]));
        r["output_text"] = json!(text);
        return json_answer("openai.responses", r);
    }
    let mut in_progress = item.clone();
    in_progress["status"] = json!("in_progress");
    in_progress["content"] = json!([]);
    let part = json!({"type":"output_text","text":"","annotations":[]});
    let done_part = json!({"type":"output_text","text":text,"annotations":[]});
    let ev = |t: &str, mut v: Value| {
        v["type"] = json!(t);
        v
    };
    let events: Vec<(Option<&str>, Value)> = vec![
        (
            Some("response.created"),
            ev("response.created", json!({"response": response("in_progress", json!([]))})),
        ),
        (
            Some("response.in_progress"),
            ev("response.in_progress", json!({"response": response("in_progress", json!([]))})),
        ),
        (
            Some("response.output_item.added"),
            ev("response.output_item.added", json!({"output_index":0,"item":in_progress})),
        ),
        (
            Some("response.content_part.added"),
            ev(
                "response.content_part.added",
                json!({"item_id":"msg_aiwatch_audit","output_index":0,"content_index":0,"part":part}),
            ),
        ),
        (
            Some("response.output_text.delta"),
            ev(
                "response.output_text.delta",
                json!({"item_id":"msg_aiwatch_audit","output_index":0,"content_index":0,"delta":text}),
            ),
        ),
        (
            Some("response.output_text.done"),
            ev(
                "response.output_text.done",
                json!({"item_id":"msg_aiwatch_audit","output_index":0,"content_index":0,"text":text}),
            ),
        ),
        (
            Some("response.content_part.done"),
            ev(
                "response.content_part.done",
                json!({"item_id":"msg_aiwatch_audit","output_index":0,"content_index":0,"part":done_part}),
            ),
        ),
        (
            Some("response.output_item.done"),
            ev("response.output_item.done", json!({"output_index":0,"item":item})),
        ),
        (
            Some("response.completed"),
            ev("response.completed", json!({"response": response("completed", json!([item]))})),
        ),
    ];
    sse("openai.responses", &events, false)
}

fn gemini_candidate(req: &Value) -> Value {
    let gc = req.get("generationConfig").or_else(|| req.get("generation_config"));
    let wants_json = gc
        .and_then(|g| g.get("responseMimeType").or_else(|| g.get("response_mime_type")))
        .and_then(Value::as_str)
        == Some("application/json");
    let text = if wants_json {
        let schema = gc.and_then(|g| {
            g.get("responseJsonSchema")
                .or_else(|| g.get("responseSchema"))
                .or_else(|| g.get("response_json_schema"))
                .or_else(|| g.get("response_schema"))
        });
        schema.map_or_else(|| "{}".to_string(), |s| sample(s, 0).to_string())
    } else {
        TEXT.to_string()
    };
    json!({"candidates":[{"content":{"parts":[{"text":text}],"role":"model"},"finishReason":"STOP","index":0}],
           "usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2},
           "modelVersion":"mock-model","responseId":"aiwatch-audit"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_streaming_and_not() {
        let a = answer("POST", "/v1/messages?beta=true", br#"{"model":"m","stream":true}"#);
        assert_eq!((a.status, a.content_type, a.api), (200, "text/event-stream", "anthropic.messages"));
        assert!(a.body.contains("event: message_stop") && a.body.contains(r#""text":"ok""#));
        let a = answer("POST", "/v1/messages", br#"{"model":"m"}"#);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["content"][0]["text"], "ok");
        assert!(a.is_llm_call());
    }

    #[test]
    fn openai_chat_and_responses() {
        let a = answer("POST", "/v1/chat/completions", br#"{"stream":true}"#);
        assert!(a.body.ends_with("data: [DONE]\n\n") && a.body.contains(r#""content":"ok""#));
        let a = answer("POST", "/v1/responses", br#"{"stream":true}"#);
        assert!(a.body.contains("event: response.completed") && a.api == "openai.responses");
        let a = answer(
            "POST",
            "/v1/chat/completions",
            br#"{"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","properties":{"n":{"type":"integer"}}}}}}"#,
        );
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], r#"{"n":1}"#);
    }

    #[test]
    fn gemini_json_from_schema_and_sse() {
        let body = br#"{"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":{"type":"OBJECT","properties":{"complexity_reasoning":{"type":"STRING"},"complexity_score":{"type":"INTEGER"},"model_choice":{"type":"STRING","enum":["flash","pro"]}}}}}"#;
        let a = answer("POST", "/v1beta/models/gemini-x:generateContent", body);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        let inner: Value =
            serde_json::from_str(v["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap())
                .unwrap();
        assert_eq!(inner, json!({"complexity_reasoning":"ok","complexity_score":1,"model_choice":"flash"}));
        let a = answer("POST", "/v1beta/models/gemini-x:streamGenerateContent?alt=sse", b"{}");
        assert!(a.body.starts_with("data: {") && a.content_type == "text/event-stream");
        assert_eq!(answer("GET", "/api/other", b"").status, 404);
        assert!(!answer("GET", "/api/other", b"").is_llm_call());
    }
}
