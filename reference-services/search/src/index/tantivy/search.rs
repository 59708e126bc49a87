//! Searching: the tantivy query of a [`SearchQuery`] (the scope inside it), the hits in
//! its order a page at a time after a cursor, and their highlights.

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, EmptyQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Searcher, Term};
use time::Date;

use super::{Inner, unavailable};
use crate::document::IndexedDocument;
use crate::index::{IndexError, SearchHit, SearchQuery, SearchResults, SortOrder};

/// One clause of a boolean query.
type Clause = (Occur, Box<dyn Query>);

/// A hit's position in the order of results: its sort key, then its tiebreak, both
/// descending.
type Position = (f64, u64);

/// The position after which the next page starts: the last hit's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct After {
    key: f64,
    tiebreak: u64,
}

impl After {
    /// The position a cursor names, if it is one this index gave out.
    fn parse(cursor: &str) -> Result<Self, IndexError> {
        serde_json::from_str(cursor).map_err(|_| {
            IndexError::BadCursor(format!(
                "cursor position {cursor:?} is not one this index gave out; pass the \
                 previous page's cursor unchanged"
            ))
        })
    }

    /// The cursor of the page after `position`.
    fn cursor((key, tiebreak): Position) -> String {
        serde_json::to_string(&Self { key, tiebreak }).unwrap_or_default()
    }
}

impl Inner {
    /// Runs `query`: a page of hits in its order, and the cursor of the next page if there
    /// are more.
    pub(super) fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        let after = query.after.as_deref().map(After::parse).transpose()?;
        let (tantivy_query, has_text) = self.query(query)?;
        let searcher = self.reader.searcher();
        let sort = query.sort;
        let limit = query.limit.max(1);
        let found = searcher
            .search(&*tantivy_query, &ranked(sort, after, limit))
            .map_err(unavailable("the search failed"))?;
        let mut found: Vec<(Position, DocAddress)> = found
            .into_iter()
            .filter_map(|(key, address)| key.map(|key| (key, address)))
            .collect();
        let more = found.len() > limit;
        found.truncate(limit);
        let snippets = if has_text {
            Some(self.snippets(&searcher, &*tantivy_query)?)
        } else {
            None
        };
        let mut hits = Vec::with_capacity(found.len());
        for ((key, _), address) in &found {
            let IndexedDocument::Live(document) = self.read(&searcher, *address)? else {
                continue;
            };
            let highlights = match &snippets {
                Some(generator) => highlights(generator, &document.text),
                None => Vec::new(),
            };
            #[allow(clippy::cast_possible_truncation)]
            let score = (sort == SortOrder::Relevance).then_some(*key as f32);
            hits.push(SearchHit {
                document,
                score,
                highlights,
            });
        }
        let next = if more {
            found.last().map(|(position, _)| After::cursor(*position))
        } else {
            None
        };
        Ok(SearchResults { hits, next })
    }

    /// The tantivy query of `query`, and whether it has a text query (to highlight).
    fn query(&self, query: &SearchQuery) -> Result<(Box<dyn Query>, bool), IndexError> {
        let mut clauses = self.filters(query)?;
        // Blank text is no text query, as on OpenSearch.
        let text = query.text.as_deref().filter(|text| !text.trim().is_empty());
        let Some(text) = text else {
            clauses.push((Occur::Must, Box::new(AllQuery)));
            return Ok((Box::new(BooleanQuery::new(clauses)), false));
        };
        let Some(words) = self.word_clauses(text)? else {
            return Ok((Box::new(EmptyQuery), false));
        };
        clauses.extend(words);
        Ok((Box::new(BooleanQuery::new(clauses)), true))
    }

    /// The clauses every hit of `query` must match besides its text: not deleted, in the
    /// caller's scope, of the type, status and dates asked for.
    fn filters(&self, query: &SearchQuery) -> Result<Vec<Clause>, IndexError> {
        let fields = self.fields;
        let mut clauses: Vec<Clause> = vec![(Occur::Must, term(fields.deleted, "false"))];
        if let Some(customer) = query.customer_term()? {
            clauses.push((Occur::Must, term(fields.customer_id, customer)));
        }
        if let Some(doc_type) = query.doc_type {
            clauses.push((Occur::Must, term(fields.doc_type, doc_type.as_str())));
        }
        if let Some(status) = &query.status {
            clauses.push((Occur::Must, term(fields.status, status)));
        }
        if query.date_from.is_some() || query.date_to.is_some() {
            clauses.push((Occur::Must, self.date_range(query.date_from, query.date_to)));
        }
        Ok(clauses)
    }

    /// The dates from `from` to `to`, both included; a missing end is open.
    fn date_range(&self, from: Option<Date>, to: Option<Date>) -> Box<dyn Query> {
        let field = self.fields.date;
        let bound = |date: Option<Date>| {
            date.map_or(Bound::Unbounded, |date| {
                Bound::Included(Term::from_field_i64(field, i64::from(date.to_julian_day())))
            })
        };
        Box::new(RangeQuery::new(bound(from), bound(to)))
    }

    /// One clause per term of `text`, every one a must; `None` when the text can match
    /// nothing (no term, or a word the tokenizer drops).
    fn word_clauses(&self, text: &str) -> Result<Option<Vec<Clause>>, IndexError> {
        use tantivy::tokenizer::{TokenStream as _, Tokenizer as _};

        let field = self.fields.text;
        let mut tokenizer = self
            .index
            .tokenizer_for_field(field)
            .map_err(unavailable("no tokenizer for the text field"))?;
        // Every word must match. Each word (split as the text field's tokenizer splits:
        // at anything but a letter or digit) goes through that tokenizer on its own, so a
        // word it drops is seen: the default tokenizer drops words of 40 bytes or more,
        // from documents too, so such a word can never match and the query matches
        // nothing (as OpenSearch answers it), rather than the other words alone or, with
        // no other word, everything in scope.
        let mut words = tantivy::tokenizer::SimpleTokenizer::default();
        let mut words = words.token_stream(text);
        let mut clauses: Vec<Clause> = Vec::new();
        let mut unmatchable = false;
        while let Some(word) = words.next() {
            let mut tokens = tokenizer.token_stream(&word.text);
            let mut indexed = false;
            while let Some(token) = tokens.next() {
                indexed = true;
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, &token.text),
                        IndexRecordOption::WithFreqs,
                    )),
                ));
            }
            unmatchable |= !indexed;
        }
        if unmatchable || clauses.is_empty() {
            return Ok(None);
        }
        Ok(Some(clauses))
    }

    /// The highlighter of `query`'s words in the text field, up to 150 characters.
    fn snippets(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
    ) -> Result<SnippetGenerator, IndexError> {
        let mut generator = SnippetGenerator::create(searcher, query, self.fields.text)
            .map_err(unavailable("cannot build highlights"))?;
        generator.set_max_num_chars(150);
        Ok(generator)
    }
}

/// The query of the documents whose `field` is exactly `text`.
fn term(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::Basic,
    ))
}

/// Collects the first `limit + 1` hits in the order `sort`, after the position `after`.
///
/// Results go by a descending key (key, tiebreak); a page after the cursor keeps only
/// the keys below the cursor's, the others get `None`, which sorts last.
fn ranked(
    sort: SortOrder,
    after: Option<After>,
    limit: usize,
) -> impl Collector<Fruit = Vec<(Option<Position>, DocAddress)>> {
    TopDocs::with_limit(limit + 1).tweak_score(move |segment: &tantivy::SegmentReader| {
        let dates = segment
            .fast_fields()
            .i64("date")
            .ok()
            .map(|column| column.first_or_default_col(0));
        let tiebreaks = segment
            .fast_fields()
            .u64("tiebreak")
            .ok()
            .map(|column| column.first_or_default_col(0));
        move |doc: tantivy::DocId, score: tantivy::Score| {
            let date = dates.as_ref().map_or(0, |dates| dates.get_val(doc));
            let key = match sort {
                SortOrder::Relevance => f64::from(score),
                #[allow(clippy::cast_precision_loss)]
                SortOrder::DateDescending => date as f64,
                #[allow(clippy::cast_precision_loss)]
                SortOrder::DateAscending => -(date as f64),
            };
            // Ascending by tiebreak within a key.
            let tiebreak = u64::MAX - tiebreaks.as_ref().map_or(0, |column| column.get_val(doc));
            let position = (key, tiebreak);
            match after {
                Some(after) if position >= (after.key, after.tiebreak) => None,
                _ => Some(position),
            }
        }
    })
}

/// The highlights of `text`: its best fragment with the words in `<em>`, if any.
fn highlights(generator: &SnippetGenerator, text: &str) -> Vec<String> {
    let mut snippet = generator.snippet(text);
    snippet.set_snippet_prefix_postfix("<em>", "</em>");
    if snippet.is_empty() {
        Vec::new()
    } else {
        vec![snippet.to_html()]
    }
}
