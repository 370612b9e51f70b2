"""The word lists the synthetic explanations and queries are composed from.

Each entry is "phrase | short | hint words": the phrase goes into explanations ("closing
parentheses"), the short form into user-like queries ("closing parens"; empty = the phrase), the
hint words become a feature's top tokens where the tokenizer has them as one token. In a hint,
`\\n` stands for a newline and `\\p` for a pipe (`|` separates the parts).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    phrase: str
    short: str
    hints: tuple[str, ...]


def _items(*lines: str) -> tuple[Item, ...]:
    out = []
    for line in lines:
        phrase, short, hints = (part.strip() for part in (line + "||").split("|")[:3])
        words = tuple(h.replace("\\n", "\n").replace("\\p", "|") for h in hints.split())
        out.append(Item(phrase, short or phrase, words))
    return tuple(out)


LANGUAGES = _items(
    "French||le la les et est une des pour", "German||der die und ist nicht ein mit",
    "Spanish||el los que por una con", "Italian||il che della sono per",
    "Portuguese||não uma para com", "Dutch||het een van niet", "Swedish||och att det som",
    "Polish||nie się jest", "Russian||не и в на", "Turkish||bir ve bu", "Finnish||ja on että",
    "Czech||je se na", "Latin||et est in", "Greek||και το", "Chinese||的 是",
    "Japanese||の は", "Korean||이 는", "Arabic||في من", "Hindi||है के",
    "Indonesian||yang dan di", "Vietnamese||của và", "English||the and of", "Danish||og er",
    "Norwegian||og ikke", "Hungarian||és a", "Romanian||și în",
)  # fmt: skip

PROGRAMMING = _items(
    "Python||def import self None return", "JavaScript|JS|const function let var",
    "TypeScript||interface type const", "Rust||fn let mut impl", "C||int void char include",
    "C++||std template class", "Java||public class static void", "Go||func package err",
    "Haskell||where let module", "Lisp||defun lambda (", "SQL||select from where join",
    "HTML||div span href", "CSS||px color margin", "Bash|shell|echo fi then",
    "Ruby||end def do", "PHP||echo function this", "LaTeX||begin end frac", "Kotlin||fun val",
    "Swift||func let var", "R||function library", "Julia||function end",
    "Scala||def val object", "Perl||my sub", "Lua||local function end",
    "MATLAB||end function plot", "Fortran||subroutine integer", "YAML||name version",
    "JSON||{ } true false", "Markdown||# ** -",
)  # fmt: skip

CONSTRUCTS = _items(
    "import statements|imports|import from", "function definitions|function defs|def function",
    "closing parentheses|closing parens|) ))", "opening parentheses|open parens|(",
    "closing braces||}", "opening braces|braces|{", "square brackets|brackets|[ ]",
    "type annotations|type hints|int str bool", "comments||# //",
    "docstrings||Args Returns", "string literals|strings|\" '",
    "variable names||x data value", "return statements|returns|return",
    "for loops||for in range", "while loops||while", "if conditions|conditionals|if else elif",
    "class definitions|classes|class self", "method calls||. get append",
    "array indexing|indexing|[ ]", "boolean operators||and or not",
    "assignment operators|assignments|= +=", "comparison operators|comparisons|== !=",
    "semicolons at line ends|semicolons|;", "indentation whitespace|indentation|",
    "decorators||@ property", "exception handling|exceptions|try except catch raise",
    "error messages|errors|Error Exception failed", "function arguments|arguments|args kwargs",
    "keyword arguments|kwargs|= None", "lambda expressions|lambdas|lambda",
    "list comprehensions|comprehensions|for in", "generic type parameters|generics|< > T",
    "null checks||None null nil", "print statements|prints|print printf console",
    "log messages|logging|log logger info", "test assertions|asserts|assert expect",
    "file paths|paths|/ path", "regular expressions|regex|re match",
    "numeric literals|number literals|0 1 100", "hexadecimal constants|hex constants|0x",
    "struct fields||struct field", "async and await keywords|async await|async await",
    "macro invocations|macros|! macro", "pointer dereferences|pointers|* ptr",
    "namespace qualifiers|namespaces|:: std", "HTML tags|tags|< > div",
    "variable declarations|declarations|let var const", "end-of-block keywords|end keywords|end fi done",
    "configuration keys|config keys|name version key", "module exports|exports|export module",
)  # fmt: skip

TOPICS = _items(
    "family members|family|mother father sister brother son daughter",
    "food and cooking|cooking|cook recipe oil salt bake", "sports||game team player score match",
    "weather||rain snow wind storm", "medicine and disease|medicine|patient disease treatment doctor",
    "law and courts|legal|court law judge trial", "finance and banking|finance|bank money loan credit",
    "music||song album band guitar", "chemistry||acid molecule reaction",
    "astronomy||star planet galaxy orbit", "elections||vote election candidate party",
    "religion||church god prayer faith", "war and the military|military|army war soldier battle",
    "emotions||happy sad angry fear love", "colours|colors|red blue green yellow",
    "animals||dog cat horse bird", "plants and gardening|plants|tree flower seed garden",
    "clothing|clothes|shirt dress shoes coat", "furniture||table chair bed desk",
    "vehicles||car truck bus train", "geography||river mountain coast island",
    "mathematics|math|equation theorem number proof", "computer hardware|hardware|CPU memory disk chip",
    "the internet|internet|website online email web", "education||school student teacher class",
    "employment and jobs|jobs|job work salary employer", "real estate||house rent property apartment",
    "agriculture|farming|farm crop harvest cattle", "crime||police arrest murder theft",
    "travel||hotel flight trip tourist", "holidays and festivals|holidays|Christmas holiday festival",
    "body parts||hand head eye heart leg", "time and calendars|time|day week month year",
    "physics||energy force mass quantum", "biology||cell gene protein species",
    "history||century empire king ancient", "politics||government minister policy",
    "economics||market price inflation trade", "technology companies|tech companies|Google Apple Microsoft",
    "social media||Twitter Facebook post", "health and fitness|fitness|exercise diet weight",
    "children and parenting|parenting|child baby parents",
    "marriage and relationships|relationships|wife husband wedding",
    "death and funerals|death|died funeral death", "money and prices|prices|price cost dollars",
    "shopping||buy store sale", "energy and climate|climate|climate carbon energy solar",
    "the ocean|ocean|sea ocean fish wave", "space exploration|space|NASA rocket launch",
    "film and television|movies|film movie actor series", "literature||novel poem author",
    "art and painting|art|painting artist museum", "architecture||building tower bridge",
    "transportation|transport|road traffic station", "cities||city town urban",
    "rural life|countryside|village farm rural", "kitchen utensils|kitchen|knife pan spoon",
    "drinks and beverages|drinks|coffee tea wine beer",
    "fruits and vegetables|produce|apple banana tomato", "sizes and quantities|quantities|large small many few",
    "directions and locations|directions|north south left right",
    "natural disasters|disasters|earthquake flood fire", "infectious diseases|diseases|cancer flu virus",
    "pharmaceuticals|drugs|drug dose tablet", "insurance||insurance policy claim",
    "taxes||tax income revenue", "software development|software|code bug release",
    "cybersecurity|security|password attack security", "video games|gaming|game player level",
    "board games||chess dice", "pets||dog cat puppy", "birds||bird eagle wings",
    "insects||bee ant insect", "royalty and nobility|royalty|king queen prince",
    "universities and research|academia|university research professor",
    "units of measurement|units|meter unit measure", "grammar and language|linguistics|word grammar sentence",
    "fashion||style fashion designer", "beauty and cosmetics|cosmetics|skin hair makeup",
    "sleep and dreams|sleep|sleep dream night", "construction||concrete build workers",
    "mining and metals|mining|gold iron steel mine",
)  # fmt: skip

SYNTAX = _items(
    "subject pronouns|pronouns|he she they we", "object pronouns||him her them",
    "possessive pronouns|possessives|his her their", "reflexive pronouns|reflexives|himself herself",
    "past-tense verbs|past tense|was were had said", "present-tense verbs|present tense|is are has",
    "future tense markers|future tense|will shall", "plural nouns|plurals|people years things",
    "adjectives||new good great", "adverbs ending in -ly|adverbs|only really",
    "prepositions||in on at of", "coordinating conjunctions|conjunctions|and but or",
    "subordinating conjunctions|subordinate clauses|because although while",
    "auxiliary verbs|auxiliaries|have been be", "modal verbs|modals|can could would should",
    "definite articles|the|the", "indefinite articles|articles|a an", "negation||not no never",
    "comparatives||more less better", "superlatives||most best largest",
    "question words|wh-words|what why how where", "relative pronouns|relative clauses|which who that",
    "passive voice constructions|passive voice|was by been", "gerunds||being having",
    "the infinitive marker 'to'|to-infinitives|to", "word-initial subword tokens|word starts|",
    "word-final subword tokens|word endings|ing ed ly", "capitalised words|capitalized words|The In",
    "contractions||'s 't 're", "honorifics||Mr Mrs Dr", "quantifiers||all some every each",
    "discourse markers||however therefore", "hedging words|hedging|perhaps maybe possibly",
    "intensifiers||very extremely", "reporting verbs||said told reported",
    "demonstratives||this that these", "numbers written as words|number words|one two ten",
    "verbs of motion|motion verbs|go went walk run", "verbs of perception|perception verbs|see saw hear",
    "copulas||is was be", "interjections||oh yes wow", "first-person pronouns|first person|I me my we",
    "second-person address|second person|you your", "sentence-initial conjunctions|sentence-initial and|And But",
    "mass nouns||water information", "proper nouns||", "compound nouns||", "phrasal verb particles|phrasal verbs|up out off",
)  # fmt: skip

ENTITIES = _items(
    "person names|names|John Mary David", "first names||Michael Sarah James",
    "surnames||Smith Johnson Brown", "city names|cities|London Paris Berlin Tokyo",
    "country names|countries|France Germany China India", "company names|companies|Google Microsoft Apple",
    "university names|universities|Harvard Oxford Stanford", "sports teams|teams|United City FC",
    "months||January March October", "days of the week|weekdays|Monday Friday Sunday",
    "currencies||dollar euro pound yen", "chemical elements|elements|oxygen carbon iron",
    "planets||Mars Jupiter Earth", "rivers||river Nile Thames", "mountains||Alps Everest mount",
    "newspapers||Times Post Guardian", "political parties|parties|Democratic Labour Party",
    "software libraries|libraries|numpy pandas react", "musical instruments|instruments|piano guitar violin",
    "medications||aspirin insulin", "brand names|brands|Nike Toyota", "car makers|cars|Ford Tesla BMW",
    "US states||California Texas Ohio", "German cities||Munich Hamburg Berlin",
    "French cities||Paris Lyon Marseille", "book titles||", "film titles||",
    "historical figures||Napoleon Lincoln Caesar", "scientists||Einstein Newton Darwin",
    "biblical names||Jesus Moses Paul", "Greek gods|gods|Zeus Apollo",
    "military ranks|ranks|General Captain Colonel", "job titles||manager director engineer",
    "street names|streets|Street Avenue Road", "airports||airport Heathrow",
    "language names||English Spanish", "nationalities||American British French",
    "religious denominations|denominations|Catholic Protestant",
    "international organisations|organisations|UN NATO EU", "websites||Wikipedia YouTube",
)  # fmt: skip

PUNCTUATION = _items(
    "commas||,", "full stops|periods|.", "quotation marks|quotes|\" “ ”", "apostrophes||'",
    "hyphens||-", "colons||:", "semicolons||;", "parentheses|parens|( )",
    "square brackets|brackets|[ ]", "ellipses||...", "exclamation marks||!",
    "question marks||?", "em dashes|dashes|— –", "slashes||/", "underscores||_",
    "asterisks||*", "hash signs|hashes|#", "newlines||\\n", "double newlines|blank lines|\\n\\n",
    "percent signs|percent|%", "ampersands||&", "dollar signs||$", "equals signs|equals|=",
    "pipes||\\p", "angle brackets||< >", "backticks||`", "tildes||~", "at signs||@",
)  # fmt: skip

NUMBERS = _items(
    "years||2019 1990 2020", "dates||January 2019 12", "percentages||% percent",
    "phone numbers||555", "prices||$ 99 price", "decimal numbers|decimals|. 5 0",
    "ordinal numbers|ordinals|first second th", "Roman numerals||II III IV",
    "times of day|times|pm am :", "measurements||cm kg km", "page numbers||pp page",
    "version numbers|versions|v 1 2", "large numbers with thousands separators|large numbers|000 ,",
    "match scores|scores|-", "ages||years old", "coordinates||° N E", "postal codes|zip codes|",
    "ISBNs||ISBN", "single digits|digits|1 2 3", "fractions||/ half",
    "temperatures||° degrees", "IP addresses||192 .", "centuries||century th",
    "durations||minutes hours", "monetary amounts|amounts|million billion",
    "p-values and test statistics|p-values|p <",
)  # fmt: skip

CONTEXTS = _items(
    "news articles|news", "legal contracts|contracts", "recipes", "product reviews|reviews",
    "scientific abstracts|abstracts", "forum posts|forums", "tweets", "song lyrics|lyrics",
    "chat messages|chat", "Wikipedia infoboxes|infoboxes", "bibliographies", "tables",
    "email headers|emails", "source code comments|code comments", "dialogue", "poetry",
    "medical reports|medical notes", "financial reports", "job advertisements|job ads",
    "error logs|logs", "citations", "headings", "bulleted lists|lists", "footnotes", "URLs",
    "math formulas|formulas", "sports reports", "weather forecasts|forecasts", "patents",
    "government documents|government docs", "religious texts|scripture",
    "children's stories|stories", "movie subtitles|subtitles", "textbooks",
    "user manuals|manuals", "press releases", "encyclopedia entries|encyclopedia",
    "biographies", "travel guides", "Q&A pages|Q&A",
)  # fmt: skip

POSITIONS = _items(
    "at the start of a sentence", "after a comma", "at the end of a line",
    "inside quotation marks", "before a number", "after the word 'the'", "following a newline",
    "at the start of a document", "in titles", "inside parentheses", "before a closing bracket",
    "after a colon", "at the end of a paragraph", "in the middle of a word",
    "after an opening quote",
)  # fmt: skip

CODE_CONTEXTS = _items(
    "test files", "configuration files", "tutorials", "Stack Overflow answers",
    "Jupyter notebooks", "library source code", "build scripts", "API documentation",
    "commit messages", "README files",
)  # fmt: skip

SLOTS: dict[str, tuple[Item, ...]] = {
    "L": LANGUAGES, "P": PROGRAMMING, "C": CONSTRUCTS, "T": TOPICS, "S": SYNTAX,
    "E": ENTITIES, "U": PUNCTUATION, "N": NUMBERS, "X": CONTEXTS, "O": POSITIONS,
    "K": CODE_CONTEXTS,
}  # fmt: skip
"""Slot letter -> its items, as used in the templates of texts.py."""
