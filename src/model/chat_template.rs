//! Chat templates: the Jinja template in a model's `tokenizer_config.json`, rendered with
//! minijinja the way transformers renders it with Jinja2, or a plain format for models without one.

use minijinja::{context, Environment};
use serde_json::Value;

use crate::{Error, ErrorKind, Result};

/// The template's name inside its environment.
const NAME: &str = "chat";

/// The most bytes a rendered chat may take: the prompt limit ([`crate::model::MAX_PROMPT_BYTES`]).
/// The render stops there, rather than build a prompt that would be refused after.
pub const MAX_RENDER_BYTES: usize = crate::model::MAX_PROMPT_BYTES;

/// The most template instructions one render may run (minijinja's fuel): far more than a chat
/// of the most messages a request may hold takes through a chat template (tinychat's, with 2048
/// messages: about 60,000), and a bound on a template whose loops grow with the messages.
pub const RENDER_FUEL: u64 = 5_000_000;

/// Turns a conversation into the prompt text a model was trained on.
///
/// With a Jinja template it renders as transformers' `apply_chat_template` does: `trim_blocks`
/// and `lstrip_blocks` on, the variables `messages`, `add_generation_prompt`, `bos_token` and
/// `eos_token`, a `raise_exception(message)` function (its message becomes a 400), and the
/// Python string methods templates call (`.strip()`, `.startswith()`, ...).
///
/// Without one (the **plain format**, as for the byte-level models tinyserve served first), each
/// message becomes a line `System: ...`, `User: ...` or `Assistant: ...` (`developer` counts as
/// system), and `add_generation_prompt` ends the prompt with `Assistant:`.
///
/// # Example
/// ```
/// use serde_json::json;
/// use tinyserve::model::ChatTemplate;
/// let template = ChatTemplate::new(
///     Some("{% for m in messages %}<{{ m.role }}>{{ m.content.strip() }}{{ eos_token }}{% endfor %}\
///           {% if add_generation_prompt %}<assistant>{% endif %}"),
///     None,
///     Some("</s>"),
/// )?;
/// let messages = [json!({"role": "user", "content": " Hi "})];
/// assert_eq!(template.render(&messages, true)?, "<user>Hi</s><assistant>");
/// let plain = ChatTemplate::new(None, None, None)?;
/// assert_eq!(plain.render(&messages, true)?, "User:  Hi \nAssistant:");
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub struct ChatTemplate {
    /// `None` for the plain format.
    environment: Option<Environment<'static>>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("jinja", &self.environment.is_some())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja template; `None` for the plain format). A syntax error fails
    /// here, so a model with a broken template fails at start-up rather than on a request.
    pub fn new(
        source: Option<&str>,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<ChatTemplate> {
        let environment = match source {
            Some(source) => Some(environment(source)?),
            None => None,
        };
        Ok(ChatTemplate {
            environment,
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
        })
    }

    /// Whether this is the plain format (the model has no template).
    pub fn is_plain(&self) -> bool {
        self.environment.is_none()
    }

    /// The prompt for `messages` (each an object with `role` and `content`, and whatever else
    /// the template reads); `add_generation_prompt` appends the start of the assistant's turn.
    ///
    /// Fails with a 400 `invalid_input` when the template raises (`raise_exception`, such as
    /// "Conversation roles must alternate...") or cannot render these messages.
    pub fn render(&self, messages: &[Value], add_generation_prompt: bool) -> Result<String> {
        let Some(environment) = &self.environment else {
            return plain(messages, add_generation_prompt);
        };
        let template = environment
            .get_template(NAME)
            .map_err(|err| Error::internal(format!("chat template: {err}")))?;
        let mut out = Bounded {
            text: Vec::new(),
            limit: MAX_RENDER_BYTES,
        };
        let rendered = template.render_captured_to(
            context! {
                messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            },
            &mut out,
        );
        if let Err(err) = rendered {
            let message = match (err.kind(), err.detail()) {
                (minijinja::ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
                (minijinja::ErrorKind::WriteFailure, _) => {
                    format!("the rendered chat is over {MAX_RENDER_BYTES} bytes, the prompt limit")
                }
                (minijinja::ErrorKind::OutOfFuel, _) => {
                    format!("the template ran out of its {RENDER_FUEL} instructions for one chat")
                }
                _ => err.to_string(),
            };
            return Err(Error::invalid_input(format!("chat template: {message}")));
        }
        String::from_utf8(out.text)
            .map_err(|_| Error::internal("chat template: the rendered text is not UTF-8"))
    }
}

/// The rendered text, refusing to grow past `limit` bytes (minijinja then stops rendering with a
/// write failure).
struct Bounded {
    text: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len().saturating_add(buf.len()) > self.limit {
            return Err(std::io::Error::other("the rendered chat is over the limit"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An environment holding `source` as template [`NAME`], configured as transformers renders.
fn environment(source: &str) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_fuel(Some(RENDER_FUEL));
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|err| Error::internal(format!("chat template: {err}")))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    env.add_template_owned(NAME, source.to_string())
        .map_err(|err| {
            Error::new(
                ErrorKind::Internal,
                format!("chat template does not compile: {err}"),
            )
        })?;
    Ok(env)
}

/// The plain format: `Role: content` lines, then `Assistant:`.
fn plain(messages: &[Value], add_generation_prompt: bool) -> Result<String> {
    let mut prompt = String::new();
    for message in messages {
        let role = match message.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => "System",
            Some("user") => "User",
            Some("assistant") => "Assistant",
            Some(other) => {
                return Err(Error::invalid_input(format!(
                    "unknown message role \"{other}\""
                )))
            }
            None => return Err(Error::invalid_input("a message has no \"role\"")),
        };
        let content = match message.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect(),
            Some(Value::Null) | None => String::new(),
            Some(_) => {
                return Err(Error::invalid_input(
                    "message \"content\" must be a string or an array of parts",
                ))
            }
        };
        prompt.push_str(&format!("{role}: {content}\n"));
    }
    if add_generation_prompt {
        prompt.push_str("Assistant:");
    }
    Ok(prompt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_generation_prompt_is_honoured() {
        let template = ChatTemplate::new(
            Some("{% for m in messages %}{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}>{% endif %}"),
            None,
            None,
        )
        .unwrap();
        let messages = [json!({"role": "user", "content": "a"})];
        assert_eq!(template.render(&messages, true).unwrap(), "a\n>");
        assert_eq!(template.render(&messages, false).unwrap(), "a\n");
    }

    #[test]
    fn raise_exception_becomes_a_400_with_its_message() {
        let template = ChatTemplate::new(
            Some("{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok"),
            None,
            None,
        )
        .unwrap();
        let err = template
            .render(&[json!({"role": "assistant", "content": "x"})], true)
            .unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.message(), "chat template: first must be user");
    }

    #[test]
    fn trim_and_lstrip_blocks_and_python_methods_work_as_in_transformers() {
        let source = "{% for m in messages %}\n    {% if m.content.startswith('x') %}\n{{ m.content.upper() }}|{% endif %}\n{% endfor %}";
        let template = ChatTemplate::new(Some(source), None, None).unwrap();
        let messages = [
            json!({"role": "user", "content": "xy"}),
            json!({"role": "user", "content": "ab"}),
        ];
        assert_eq!(template.render(&messages, false).unwrap(), "XY|");
    }

    #[test]
    fn loop_controls_are_enabled() {
        let source = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}";
        let template = ChatTemplate::new(Some(source), None, None).unwrap();
        let messages = [
            json!({"role": "user", "content": "a"}),
            json!({"role": "user", "content": "b"}),
        ];
        assert_eq!(template.render(&messages, false).unwrap(), "a");
    }

    #[test]
    fn the_rendered_text_and_the_work_are_bounded_while_rendering() {
        let template = ChatTemplate::new(
            Some("{% for m in messages %}{{ m.content }}{% endfor %}"),
            None,
            None,
        )
        .unwrap();
        let big = json!({"role": "user", "content": "x".repeat(600 * 1024)});
        assert_eq!(
            template
                .render(std::slice::from_ref(&big), false)
                .unwrap()
                .len(),
            600 * 1024
        );
        let err = template.render(&[big.clone(), big], false).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message().contains("over 1048576 bytes"), "{err}");
        let endless = ChatTemplate::new(
            Some("{% for m in messages %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endfor %}"),
            None,
            None,
        )
        .unwrap();
        let err = endless
            .render(&[json!({"role": "user", "content": "x"})], false)
            .unwrap_err();
        assert!(err.message().contains("ran out of"), "{err}");
    }

    #[test]
    fn a_broken_template_fails_when_compiled() {
        let err = ChatTemplate::new(Some("{% for m in messages %}"), None, None).unwrap_err();
        assert!(
            err.message().starts_with("chat template does not compile"),
            "{err}"
        );
    }

    #[test]
    fn the_plain_format_writes_role_lines() {
        let plain = ChatTemplate::new(None, None, None).unwrap();
        assert!(plain.is_plain());
        let messages = [
            json!({"role": "developer", "content": "Be brief."}),
            json!({"role": "user", "content": [{"type": "text", "text": "Hi"}]}),
            json!({"role": "assistant", "content": "Hello"}),
        ];
        assert_eq!(
            plain.render(&messages, true).unwrap(),
            "System: Be brief.\nUser: Hi\nAssistant: Hello\nAssistant:"
        );
        let err = plain
            .render(&[json!({"role": "tool", "content": "x"})], true)
            .unwrap_err();
        assert_eq!(err.message(), "unknown message role \"tool\"");
    }
}
