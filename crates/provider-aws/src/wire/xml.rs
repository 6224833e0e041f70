//! The XML answers of the Query-protocol services (EC2, Auto Scaling, STS) as a small tree of
//! elements, read with quick-xml's pull parser, and looked into by path.
//!
//! A tree rather than serde types: each operation reads a handful of fields, and EC2's answers
//! nest lists as `<xSet><item>` while Auto Scaling's say `<X><member>`; a path lookup reads both.

use quick_xml::events::Event;

/// One element: its local name (namespace prefixes dropped), its text, its children in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child of this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child of this name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a `/`-separated path of child names.
    pub fn at(&self, path: &str) -> Option<&Element> {
        path.split('/')
            .filter(|p| !p.is_empty())
            .try_fold(self, |e, name| e.child(name))
    }

    /// The text at a path, if the element is there.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        self.at(path).map(|e| e.text.as_str())
    }

    /// The text at a path, if it is there and not empty.
    pub fn value(&self, path: &str) -> Option<String> {
        self.text_at(path)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    }

    /// The items of the list at `path` (`<xSet><item>…` or `<X><member>…`).
    pub fn items<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a Element> + 'a {
        self.at(path)
            .into_iter()
            .flat_map(|l| l.children.iter())
            .filter(|c| c.name == "item" || c.name == "member")
    }

    /// The first element of this name anywhere below (depth first), this one included.
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => name.to_string(),
    }
}

/// Parses a document into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let close = |stack: &mut Vec<Element>, root: &mut Option<Element>| {
        if let Some(mut done) = stack.pop() {
            let trimmed = done.text.trim();
            if trimmed.len() != done.text.len() && !done.children.is_empty() {
                done.text = trimmed.to_string();
            }
            match stack.last_mut() {
                Some(parent) => parent.children.push(done),
                None => *root = Some(done),
            }
        }
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => stack.push(Element {
                name: local(e.name().as_ref()),
                ..Element::default()
            }),
            Ok(Event::Empty(e)) => {
                stack.push(Element {
                    name: local(e.name().as_ref()),
                    ..Element::default()
                });
                close(&mut stack, &mut root);
            }
            Ok(Event::End(_)) => close(&mut stack, &mut root),
            Ok(Event::Text(t)) => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&t.xml10_content());
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&t.into_inner());
                }
            }
            Ok(Event::GeneralRef(r)) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r)
                        .ok_or_else(|| format!("unknown entity &{};", &*r))?
                        .to_string(),
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&resolved);
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(format!("not XML at byte {}: {e}", reader.error_position()));
            }
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no element in the document".into())
}

/// The error code and message of a Query-protocol error answer: EC2's
/// `<Response><Errors><Error>` and Auto Scaling's and STS's `<ErrorResponse><Error>`.
pub fn error(root: &Element) -> Option<(String, String)> {
    let e = root.find("Error")?;
    Some((e.value("Code")?, e.value("Message").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ec2_answer_reads_by_path_with_its_lists() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>r-1</requestId>
    <reservationSet>
        <item>
            <instancesSet>
                <item>
                    <instanceId>i-1</instanceId>
                    <instanceState><code>16</code><name>running</name></instanceState>
                    <tagSet>
                        <item><key>Name</key><value>a &amp; b &lt;c&gt; &#233;</value></item>
                        <item><key>empty</key><value/></item>
                    </tagSet>
                </item>
            </instancesSet>
        </item>
    </reservationSet>
    <nextToken/>
</DescribeInstancesResponse>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "DescribeInstancesResponse");
        let i = root
            .items("reservationSet")
            .flat_map(|r| r.items("instancesSet"))
            .next()
            .unwrap();
        assert_eq!(i.text_at("instanceState/name"), Some("running"));
        let tags: Vec<_> = i
            .items("tagSet")
            .map(|t| {
                (
                    t.value("key").unwrap(),
                    t.text_at("value").unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(tags[0].1, "a & b <c> é");
        assert_eq!(tags[1].1, "");
        assert_eq!(root.value("nextToken"), None);
    }

    #[test]
    fn errors_of_both_query_dialects_are_found() {
        let ec2 = "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>no i-1</Message></Error></Errors><RequestID>x</RequestID></Response>";
        assert_eq!(
            error(&parse(ec2).unwrap()),
            Some(("InvalidInstanceID.NotFound".into(), "no i-1".into()))
        );
        let asg = "<ErrorResponse xmlns=\"https://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>bad</Message></Error></ErrorResponse>";
        assert_eq!(
            error(&parse(asg).unwrap()),
            Some(("ValidationError".into(), "bad".into()))
        );
    }

    #[test]
    fn broken_documents_are_errors_not_panics() {
        assert!(parse("").is_err());
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>&bogus;</a>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("not xml at all").is_err());
    }
}
