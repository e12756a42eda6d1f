"""The default backend: PostgreSQL full-text and trigram search over the live tables.

Nothing to keep in sync: the conditions run against the rows themselves, through the
expression indexes of migration ``search.0002`` (names by trigram similarity and word
prefixes, e-mails lower-cased, license numbers without punctuation) and the unique and plain
indexes the tables already have (MRN, NPI, visit id, phone, date of birth). Each search is the
changelist's own query, narrowed and annotated with ``search_score``; a visit or case search first
ranks the patients (and providers) it follows, once, in one query each (``People.followed``).
"""

from dataclasses import replace

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.lookups import TrigramWordSimilar
from django.contrib.postgres.search import SearchQuery as TsQuery
from django.contrib.postgres.search import (
    SearchVectorExact,
    SearchVectorField,
    TrigramSimilarity,
    TrigramWordSimilarity,
)
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce, Length, Lower
from django.db.models.lookups import Exact, Regex

from clinical.models import Patient, Provider, ProviderLicense, Visit
from search.documents import DocumentType
from search.models import PatientName
from search.query import SearchQuery, sorted_letters

EXACT = 10.0  # an identifier (MRN, phone, visit id...) outranks any name
WORD_BONUS = 0.5  # every typed word starts (or is) a word of the name
# Most patients or providers a visit or case search follows: bounds the work of a one-letter
# name, far more than anyone reads.
MAX_PEOPLE = 500
UNRANKED = Value(-MAX_PEOPLE - 1.0)  # below the rank of any person followed


class PersonName(Func):
    """``search_person_name(first, last)``: the lower-cased full name the trigram indexes hold."""

    function = "search_person_name"
    output_field = TextField()


class NameVector(Func):
    """``search_name_vector(first, last)``: the name's words, as the full-text indexes hold them."""

    function = "search_name_vector"
    output_field = SearchVectorField()


class SubjectVector(Func):
    function = "search_subject_vector"
    output_field = SearchVectorField()


class LicenseKey(Func):
    function = "search_license_key"
    output_field = TextField()


class SortedLetters(Func):
    """``search_sorted_letters(name)``: its lower-cased letters in order, which two swapped letters leave unchanged."""

    function = "search_sorted_letters"
    output_field = TextField()


class AnyOf(Func):
    """``column = ANY(ARRAY(subquery))``.

    Unlike ``IN (subquery)``, this stays an index condition inside an OR, so a search on a
    million visits reads only the visits of the few people who matched.
    """

    template = "%(expressions)s)"
    arg_joiner = " = ANY(ARRAY"
    output_field = BooleanField()


class RankIn(Func):
    """``-array_position(ARRAY(subquery), column)``: higher for rows whose id comes first."""

    template = "-array_position(ARRAY%(expressions)s)"
    output_field = FloatField()


class RankAmong(Func):
    """``-array_position(ids, column)``: higher for rows whose id comes first in the list."""

    template = "-array_position(%(expressions)s)"
    output_field = FloatField()


def _ids(ids: list[int]) -> Cast:
    return Cast(Value(ids), ArrayField(BigIntegerField()))


class PeopleRank(Func):
    """A visit's score: the better place of its patient and its provider among those followed (-1 the best).

    Keeps the ranked ids (``patients``, ``providers``) so that a page can be read person by
    person instead of sorting every visit of every person followed (``first_rows``).
    """

    function = "GREATEST"
    output_field = FloatField()

    def __init__(self, patients: list[int], providers: list[int]):
        self.patients, self.providers = list(patients), list(providers)
        super().__init__(
            Coalesce(RankAmong(_ids(self.patients), F("patient_id")), UNRANKED),
            Coalesce(RankAmong(_ids(self.providers), F("provider_id")), UNRANKED),
        )


class NameRank(ExpressionWrapper):
    """A patient search's score when it is the name's alone: the same for every patient of a name.

    Keeps the search (``people``) so that a page can be read from the names that fill it
    (``patient_names``, ``patients_named``) instead of scoring every patient who bears one.
    """

    def __init__(self, people: "People"):
        self.people = people
        super().__init__(people.score(), output_field=FloatField())


def _if(condition, weight: float) -> Case:
    return Case(When(condition, then=Value(weight)), default=Value(0.0), output_field=FloatField())


def _tsquery(words: tuple[str, ...], *, config: str = "simple") -> TsQuery:
    """Return ``word1:* & word2:*``: every word starts a word of the text."""
    # Words are letters only (search.query), so they cannot carry tsquery syntax.
    return TsQuery(" & ".join(f"{word}:*" for word in words), search_type="raw", config=config)


def _sum(parts: list) -> object:
    total = Value(0.0, output_field=FloatField())
    for part in parts:
        total = total + part
    return total


class People:
    """The conditions and score of a patient or provider search, on the row or through a foreign key."""

    def __init__(self, query: SearchQuery, *, providers: bool = False, prefix: str = ""):
        self.query, self.providers, self.prefix = query, providers, prefix

    def _f(self, name: str) -> F:
        return F(self.prefix + name)

    def _identifiers(self) -> list:
        q, f = self.query, self._f
        found = []
        if q.phone:
            found.append(Q(**{self.prefix + "phone": q.phone}))
        if q.email:
            found.append(Exact(Lower(f("email")), q.email))
        if self.providers:
            if q.npi:
                found.append(Q(**{self.prefix + "npi": q.npi}))
            if q.license:
                holders = ProviderLicense.objects.filter(Exact(LicenseKey("license_number"), q.license))
                found.append(AnyOf(f("id"), Subquery(holders.values("provider_id"))))
        elif q.mrn:
            found.append(Q(**{self.prefix + "mrn": q.mrn}))
        return found

    def _name(self) -> PersonName:
        return PersonName(self._f("first_name"), self._f("last_name"))

    def _name_matches(self) -> Q | None:
        if not self.query.words:
            return None
        vector = NameVector(self._f("first_name"), self._f("last_name"))
        # name %> 'typed': the typed words are close to some words of the name (word similarity at
        # 0.5, see settings.DATABASES: "Mraia Garcia" still finds Maria Garcia), or start them, or
        # are them with two letters swapped.
        matches = TrigramWordSimilar(self._name(), self.query.text)
        return Q(matches) | Q(SearchVectorExact(vector, _tsquery(self.query.words))) | self._letters_match()

    def _letters_match(self) -> Q:
        """Return the name or last name typed with letters swapped, which trigrams often miss ("Mei Mednoza").

        Through the sorted-letters indexes of migration ``search.0006``; ``_same_letters`` ranks these rows.
        """
        letters = sorted_letters(self.query.text)
        if not letters:  # nothing to compare (digits only): no row matches by letters
            return Q()
        whole, last = SortedLetters(self._name()), SortedLetters(self._f("last_name"))
        return Q(Exact(whole, letters)) | Q(Exact(last, letters))

    def _person(self) -> Q | None:
        """Return the name and date-of-birth condition: both must hold when both were typed."""
        q = self.query
        if self.providers and q.dob:
            return None  # a date of birth means a patient is wanted
        dob = Q(**{self.prefix + "date_of_birth": q.dob}) if q.dob else None
        parts = [part for part in (self._name_matches(), dob) if part is not None]
        if not parts:
            return None
        return parts[0] & parts[1] if len(parts) == 2 else parts[0]

    def name_alone(self) -> bool:
        """Return True when only a name was typed (no identifier, no date of birth): its score is the name's."""
        return bool(self.query.words) and not self.query.dob and not self._identifiers()

    def where(self) -> Q | None:
        """Return the condition a matching row meets, or None when the input cannot match one."""
        return _any([*self._identifiers(), self._person()])

    def score(self):
        """Return the relevance: exact identifiers first, then name similarity and whole-word bonuses.

        Word similarity finds the typed words in the name; whole-name similarity then prefers
        the name with nothing more to it ("Maria Garcia" over "Maria Garcia-Lopez").
        """
        parts = [_if(condition, EXACT) for condition in self._identifiers()]
        if self.query.words and self._person() is not None:
            parts += self._name_score()
        return _sum(parts)

    def _name_score(self) -> list:
        """Return the parts of a name's relevance, each between 0 and 1."""
        words, text, name = self.query.words, self.query.text, self._name()
        # Regular expressions on the row, not to_tsvector(): a few microseconds a row instead of tens.
        starts = [Regex(name, rf"\m{word}") for word in words]  # words are letters only: no metacharacters
        return [
            TrigramWordSimilarity(text, name),
            TrigramSimilarity(name, text),
            # Every typed word starts a word of the name; in the order typed; or is a whole word.
            _if(_all(starts), WORD_BONUS),
            _if(Regex(name, r"\m" + r"\w*\W+".join(words)), WORD_BONUS),
            _if(_all([Regex(name, rf"\m{word}\M") for word in words]), WORD_BONUS),
            # Two letters swapped ("Weebr" for Weber): trigrams barely notice, the letters do.
            self._same_letters(self._name(), text),
            self._same_letters(Lower(self._f("last_name")), text),
        ]

    @staticmethod
    def _same_letters(name, text: str) -> Case:
        """Return WORD_BONUS when ``name`` is ``text`` with letters swapped.

        Letters are sorted only for names of the same length that are not ``text`` itself.
        """
        same = _if(Exact(SortedLetters(name), sorted_letters(text)), WORD_BONUS)
        return Case(
            When(Exact(name, text), then=Value(0.0)),
            When(Exact(Length(name), len(text)), then=same),
            default=Value(0.0),
            output_field=FloatField(),
        )

    def ranked(self, model, *, limit: int = MAX_PEOPLE, using: str | None = None) -> list[int]:
        """Return the ids of the ``limit`` best matches of ``model``, best first.

        The matches are ranked once, here (one query, on ``using``'s database; two for patients
        found by name alone: their names, then the patients of the best ones), and the visit or
        case search takes their ids as a list: its count and its page then never rank people
        again (at a million patients, a common surname is thousands of patients to score).
        """
        where = self.where()
        if where is None:
            return []
        best = model.objects.using(using).filter(where).annotate(s=self.score()).order_by("-s", "pk")
        if model is Patient and self.name_alone():  # the patients of the best names, not every namesake
            best = patients_named(best, patient_names(self, using=using), limit)
        return list(best[:limit].values_list("pk", flat=True))

    def followed(
        self, model, column: str, *, limit: int = MAX_PEOPLE, using: str | None = None
    ) -> tuple[Q | None, object]:
        """Return the condition and rank of rows whose ``column`` points at the ``limit`` best matches of ``model``.

        The rank is the match's place among them (-1 for the best, NULL for none).
        """
        ids = self.ranked(model, limit=limit, using=using)
        if not ids:
            return None, Value(None, output_field=FloatField())
        return Q(**{f"{column}__in": ids}), RankAmong(_ids(ids), F(column))


def _all(parts: list) -> Q:
    condition = Q(parts[0])
    for part in parts[1:]:
        condition &= Q(part)
    return condition


def _any(parts: list) -> Q | None:
    parts = [Q(part) if not isinstance(part, Q) else part for part in parts if part is not None]
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition |= part
    return condition


def _patients(query: SearchQuery, follow: int, using: str) -> tuple[Q | None, object]:
    people = People(query)
    if people.name_alone():
        return people.where(), NameRank(people)
    return people.where(), people.score()


def _providers(query: SearchQuery, follow: int, using: str) -> tuple[Q | None, object]:
    people = People(query, providers=True)
    return people.where(), people.score()


def _visits(query: SearchQuery, follow: int, using: str) -> tuple[Q | None, object]:
    # A license number finds the provider, not their visits; and a visit id often reads as one.
    query = replace(query, license=None)
    patients = People(query).ranked(Patient, limit=follow, using=using)
    providers = People(query, providers=True).ranked(Provider, limit=follow, using=using)
    own = Q(public_id=query.public_id) if query.public_id else None
    by_patient = Q(patient_id__in=patients) if patients else None
    by_provider = Q(provider_id__in=providers) if providers else None
    where = _any([own, by_patient, by_provider])
    # The visits of the best-matching person first (a rank of -1), and a visit id above all.
    people = PeopleRank(patients, providers)
    return where, (_sum([_if(own, EXACT * MAX_PEOPLE), people]) if own is not None else people)


def _cases(query: SearchQuery, follow: int, using: str) -> tuple[Q | None, object]:
    by_patient, patient_rank = People(query).followed(Patient, "patient_id", limit=follow, using=using)
    about_visit = (
        AnyOf(F("visit_id"), Subquery(Visit.objects.filter(public_id=query.public_id).values("pk")))
        if query.public_id
        else None
    )
    number = Q(pk=query.case_id) if query.case_id else None
    subject = SearchVectorExact(SubjectVector(F("subject")), _tsquery(query.words, config="english"))
    where = _any([number, about_visit, subject if query.words else None, by_patient])
    if query.words and number is None and about_visit is None and by_patient is None:
        # Words of subjects alone: every match ranks the same, so the list's own order decides, and
        # PostgreSQL can read it from its index (support_case_created_idx) until the page is full
        # instead of scoring and sorting every case that mentions a common word ("expired").
        return where, Value(UNRANKED.value + MAX_PEOPLE, output_field=FloatField())
    score = [Coalesce(patient_rank, UNRANKED)]
    score += [_if(part, EXACT * MAX_PEOPLE) for part in (number, about_visit) if part is not None]
    if query.words:
        score.append(_if(subject, MAX_PEOPLE))  # words of the subject rank with the best-matching patient
    return where, _sum(score)


def first_rows(queryset: QuerySet, top: int) -> QuerySet | None:
    """Return ``queryset`` narrowed to rows that can be among its first ``top``, or None when it cannot say.

    A visit search ranked by ``PeopleRank`` (and in its list's order within a person) sorts
    every visit of every person it follows to show a page: at ten million visits, the 68
    providers named Smith have 35,243. But each row's place is its better person's rank, then
    the list's order; so a row among the first ``top`` is among the ``top`` first of that
    person's own rows (the rows before it in that person's order all come before it in the
    list), and that person is no worse than the one the ``2 * top``-th row belongs to when the
    people's rows are read best person first (a visit is read at most twice: under its patient
    and its provider). Each person's rows are read through the visit's patient and provider
    indexes, with the list's filters, until ``2 * top`` rows and the rest of that last person's
    are read: a few pages' worth of rows whatever the table's size.
    """
    score = queryset.query.annotations.get("search_score")
    order = queryset.query.order_by
    if not isinstance(score, PeopleRank) or not order or order[0] != "-search_score" or top <= 0:
        return None  # sorted by a column, or searched by visit id: every row may come first
    # Each person's first ``top`` rows in the list's order, with its filters; the SQL is the ORM's,
    # the values its parameters, and the one raw piece names the person's column of ``followed``.
    newest = [
        _compiled(queryset.filter(**{column: RawSQL(f"followed.{person}", ())}).order_by(*order[1:]).values("pk")[:top])  # noqa: S611
        for column, person in (("patient_id", "patient"), ("provider_id", "provider"))
    ]
    sql = (
        # Fixed text around the ORM's compiled queries; every value is a parameter.
        "SELECT followed_rows.pk FROM (SELECT * FROM unnest(%s::bigint[], %s::bigint[]) WITH ORDINALITY"  # noqa: S608
        " AS people(patient, provider, rank) ORDER BY rank) AS followed"
        f" CROSS JOIN LATERAL (({newest[0][0]}) UNION ALL ({newest[1][0]})) AS followed_rows"
        " ORDER BY followed.rank FETCH FIRST %s ROWS WITH TIES"
    )
    params = (score.patients, score.providers, *newest[0][1], *newest[1][1], 2 * top)
    return queryset.filter(pk__in=RawSQL(sql, params))  # noqa: S611 - see above


def patient_names(people: People, *, using: str) -> list[tuple[str, str, int, float]]:
    """Return the names a patient name search matches, best first: (first, last, patients, score).

    The names' own conditions and score are the patients' (``search_patientname`` has the same
    columns and the same indexes), so each name's patients are exactly the patients it matches.
    """
    names = PatientName.objects.using(using).filter(people.where()).annotate(s=people.score()).order_by("-s")
    return list(names.values_list("first_name", "last_name", "patients", "s"))


def patients_named(queryset: QuerySet, names: list[tuple[str, str, int, float]], top: int) -> QuerySet:
    """Return ``queryset`` narrowed to the patients of the names that can fill its first ``top`` rows.

    Every patient of a name scores the same, so the first ``top`` rows are among the patients of
    the best names until ``top`` patients, with every name that ties the last one (the list's
    own order then decides among them). They are read through ``clinical_patient_name_idx``.
    """
    firsts, lasts, before, last_score = [], [], 0, None
    for first, last, patients, score in names:
        if before >= top and score != last_score:
            break
        firsts.append(first)
        lasts.append(last)
        before, last_score = before + patients, score
    if not firsts:
        return queryset.none()
    table = queryset.model._meta.db_table
    sql = (
        # Fixed text; the names are parameters.
        f"SELECT p.id FROM unnest(%s::varchar[], %s::varchar[]) AS n(first_name, last_name)"  # noqa: S608
        f" JOIN {table} AS p ON p.last_name = n.last_name AND p.first_name = n.first_name"
    )
    return queryset.filter(pk__in=RawSQL(sql, (firsts, lasts)))  # noqa: S611 - see above


def name_rank(queryset: QuerySet) -> NameRank | None:
    """Return the score of a patient name search whose rows come in relevance order, else None.

    Then every patient of a name ranks together, so the names decide the count and the first rows.
    """
    score = queryset.query.annotations.get("search_score") if hasattr(queryset, "query") else None
    order = queryset.query.order_by if score is not None else ()
    return score if isinstance(score, NameRank) and order and order[0] == "-search_score" else None


def first_of(queryset: QuerySet, top: int) -> QuerySet:
    """Return ``queryset`` narrowed to the rows that can be its first ``top`` when its search can say so.

    A patient name search's first rows are the patients of its best names (one query for the
    names); any other search is returned as it is.
    """
    score = name_rank(queryset)
    if score is None:
        return queryset
    return patients_named(queryset, patient_names(score.people, using=queryset.db), top)


def _compiled(queryset: QuerySet) -> tuple[str, tuple]:
    return queryset.query.get_compiler(using=queryset.db).as_sql()


CONDITIONS = {"patient": _patients, "provider": _providers, "visit": _visits, "case": _cases}


class PostgresBackend:
    """Search the tables themselves; nothing to index, never stale."""

    name = "postgres"

    def filter(
        self,
        queryset: QuerySet,
        query: SearchQuery,
        *,
        document: DocumentType,
        path: str = "",
        follow: int | None = None,
    ) -> QuerySet:
        """Return ``queryset`` narrowed to the rows matching ``query``, annotated with ``search_score``.

        With ``path`` (a foreign key to ``document``'s model, e.g. a license's ``provider``),
        return the rows whose related record matches, ranked by that record's relevance. Visits
        and cases follow the ``follow`` best-matching people (all of the best 500 by default):
        a page that shows only the first few needs only the visits of the first few people.
        """
        if path:
            return self._through(queryset, query, document=document, path=path)
        conditions = CONDITIONS[document.name]
        where, score = conditions(query, follow or MAX_PEOPLE, queryset.db) if not query.is_empty else (None, None)
        if where is None:
            return queryset.none().annotate(search_score=Value(0.0, output_field=FloatField()))
        if isinstance(score, NameRank) and queryset.query.where:
            score = score.expression  # filtered (by state...): the names' counts are not the rows'
        return queryset.filter(where).annotate(search_score=score)

    def _through(self, queryset: QuerySet, query: SearchQuery, *, document: DocumentType, path: str) -> QuerySet:
        related = self.filter(document.model.objects.all(), query, document=document)
        if related.query.is_empty():
            return queryset.none().annotate(search_score=Value(0.0, output_field=FloatField()))
        best = Subquery(related.order_by("-search_score", "-pk").values("pk")[: settings.SEARCH_MAX_HITS])
        column = F(f"{path}_id")
        return queryset.filter(AnyOf(column, best)).annotate(search_score=RankIn(best, column))
