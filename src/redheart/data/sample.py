"""Generator of the bundled sample dataset (`data/sample.jsonl`).

Generative process (fixed seed, so the committed file is reproducible with `redheart-sample`):

1. Pick a language (English 60%, Korean 40%) and one of 7 emotions uniformly.
2. Pick a situation for that emotion and language (each emotion has its own phrasing: "my friend
   threw me a surprise party" is joy, "I lied to my mother" guilt) and fill its slots (people,
   places, objects) from small lists; open with a neutral context sentence that affects no target.
3. Add cue phrases, each drawn independently and each driving targets:
   - intensity word (a little / quite / extremely; 조금 / 꽤 / 정말 너무) → `emotions.intensity`
     and Bentham `intensity`;
   - time phrase (today / last month / years ago) → Bentham `propinquity`;
   - duration phrase (for a moment / for weeks) → Bentham `duration`;
   - extent phrase (alone / with my family / in front of everyone) → Bentham `extent`;
   - surprise cue (suddenly, without any warning; 갑자기) → SURD `surprise`;
   - regret cue (I keep wishing I had acted differently; 그때 다르게 했어야 했다) → `regret_factor`.
4. Targets are functions of those cues and of the emotion (e.g. guilt and shame raise regret and
   self_damage, fear raises uncertainty, anger and disgust raise external_cost) plus Gaussian noise
   (σ = 0.05) clipped to [0, 1]; 3% of labels are flipped at random; 5% of each optional target is
   left missing to exercise the loss masks.
5. Planted faults so the demo shows the pipeline at work: 25 near-duplicates (an earlier record's
   text with a one-character edit, new id) and 12 invalid records, each breaking one rule.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from redheart.io import atomic_write_text
from redheart.schema import DEFAULT_BENTHAM_NAMES, DEFAULT_CLASS_NAMES, DEFAULT_SURD_NAMES

EMOTIONS = DEFAULT_CLASS_NAMES  # joy fear anger sadness disgust shame guilt

SITUATIONS = {
    "en": {
        "joy": ["{who} threw me a surprise party at {place}", "I passed the exam I had prepared for at {place}",
                "{who} told me they were proud of me", "I finally got the job offer I wanted",
                "I found {thing} I thought was lost forever", "we won the match at {place}"],
        "fear": ["a car nearly hit me near {place}", "I heard footsteps behind me in the dark at {place}",
                 "the doctor called {who} about my test results", "the plane shook violently on the way to {place}",
                 "I thought I had lost {thing} in a crowd", "a stranger followed me all the way to {place}"],
        "anger": ["{who} took credit for my work at {place}", "someone scratched {thing} and drove away",
                  "{who} lied to my face about the money", "the landlord kept my deposit without a reason",
                  "{who} insulted my family at {place}", "a driver cut me off and yelled at me near {place}"],
        "sadness": ["my grandfather passed away while I was at {place}", "{who} moved to another country",
                    "my old dog died at {place}", "I said goodbye to {who} for the last time",
                    "I lost {thing} that my mother gave me", "my best friend stopped talking to me"],
        "disgust": ["I found a cockroach in my food at {place}", "{who} spat on the floor at {place}",
                    "the toilet at {place} was covered in filth", "I smelled rotten meat in {thing}",
                    "{who} bragged about cheating on the exam", "someone left garbage all over {place}"],
        "shame": ["I forgot my lines on stage at {place}", "{who} saw me fall down at {place}",
                  "I failed the test everyone else passed", "my phone rang loudly during the ceremony at {place}",
                  "I was caught singing badly by {who}", "I could not answer the easiest question in class"],
        "guilt": ["I lied to {who} about where I was", "I broke {thing} and blamed my brother",
                  "I forgot {who}'s birthday again", "I shouted at {who} when they needed help",
                  "I did not visit my grandmother before she died", "I copied a friend's homework at {place}"],
    },
    "ko": {
        "joy": ["{who}가 {place}에서 깜짝 파티를 열어 주었다", "준비했던 시험에 합격했다",
                "{who}가 나를 자랑스럽다고 말해 주었다", "원하던 회사에서 합격 연락을 받았다",
                "잃어버린 줄 알았던 {thing}을 찾았다", "{place}에서 열린 경기에서 우리 팀이 이겼다"],
        "fear": ["{place} 근처에서 차에 치일 뻔했다", "{place}의 어두운 골목에서 누가 따라왔다",
                 "병원에서 {who}에게 검사 결과로 전화가 왔다", "{place}로 가는 비행기가 심하게 흔들렸다",
                 "사람들 속에서 {thing}을 잃어버린 줄 알았다", "낯선 사람이 {place}까지 나를 따라왔다"],
        "anger": ["{who}가 {place}에서 내 성과를 가로챘다", "누군가 {thing}을 긁고 그냥 가 버렸다",
                  "{who}가 돈 문제로 나에게 거짓말을 했다", "집주인이 이유 없이 보증금을 돌려주지 않았다",
                  "{who}가 {place}에서 우리 가족을 모욕했다", "{place} 근처에서 어떤 운전자가 끼어들며 소리를 질렀다"],
        "sadness": ["{place}에 있는 동안 할아버지가 돌아가셨다", "{who}가 다른 나라로 떠났다",
                    "오래 키운 강아지가 {place}에서 죽었다", "{who}와 마지막 인사를 나눴다",
                    "어머니가 주신 {thing}을 잃어버렸다", "가장 친한 친구가 더 이상 연락하지 않는다"],
        "disgust": ["{place}에서 음식에 바퀴벌레가 들어 있었다", "{who}가 {place} 바닥에 침을 뱉었다",
                    "{place} 화장실이 오물로 뒤덮여 있었다", "{thing}에서 썩은 고기 냄새가 났다",
                    "{who}가 시험에서 부정행위를 했다고 자랑했다", "누군가 {place}에 쓰레기를 잔뜩 버렸다"],
        "shame": ["{place} 무대에서 대사를 잊어버렸다", "{who}가 {place}에서 내가 넘어지는 걸 봤다",
                  "다른 사람들은 다 붙은 시험에서 나만 떨어졌다", "{place}의 행사 중에 내 휴대폰이 크게 울렸다",
                  "{who}에게 노래를 못 부르는 모습을 들켰다", "수업 시간에 가장 쉬운 질문에도 대답하지 못했다"],
        "guilt": ["{who}에게 내가 어디 있었는지 거짓말을 했다", "{thing}을 깨뜨리고 동생 탓을 했다",
                  "또 {who}의 생일을 잊어버렸다", "도움이 필요했던 {who}에게 소리를 질렀다",
                  "할머니가 돌아가시기 전에 찾아뵙지 못했다", "{place}에서 친구의 숙제를 베꼈다"],
    },
}

SLOTS = {
    "en": {"who": ["my sister", "my boss", "a classmate", "my neighbour", "my father", "an old friend", "my coach",
                   "my roommate", "a colleague", "my aunt"],
           "place": ["school", "the office", "the station", "the market", "the hospital", "the park", "the airport",
                     "my aunt's house", "the library", "the stadium"],
           "thing": ["my wallet", "the old watch", "my laptop", "the family photo", "my bicycle", "the ring",
                     "my notebook", "the car"]},
    "ko": {"who": ["언니", "팀장님", "같은 반 친구", "이웃", "아버지", "오랜 친구", "코치님", "룸메이트", "동료",
                   "이모"],
           "place": ["학교", "회사", "역", "시장", "병원", "공원", "공항", "이모 댁", "도서관", "경기장"],
           "thing": ["지갑", "오래된 시계", "노트북", "가족사진", "자전거", "반지", "공책", "자동차"]},
}

# Neutral context sentences (no effect on any target): they make texts as varied as real ones, so
# accidental near-duplicates are rare and the planted ones stand out.
CONTEXT = {
    "en": ["It was raining hard that evening.", "I had barely slept the night before.", "It was a Monday morning.",
           "I was on my way home from work.", "The weather was unusually warm.", "I had just finished lunch.",
           "It was late at night.", "I was wearing my new coat.", "My phone battery was almost dead.",
           "It was the first week of the semester.", "I was listening to music on the bus.",
           "We had been planning the weekend for months.", "The streets were crowded with tourists.",
           "I had a cold and a headache.", "It was my cousin's wedding day.", "The power had gone out earlier.",
           "I was reading a novel on the train.", "It snowed for the first time that year.",
           "I had just moved to a new apartment.", "Everyone was busy preparing for the holidays."],
    "ko": ["그날 저녁에는 비가 많이 내렸다.", "전날 밤 거의 잠을 못 잤다.", "월요일 아침이었다.",
           "퇴근하고 집에 가는 길이었다.",
           "날씨가 유난히 따뜻했다.", "막 점심을 먹은 참이었다.", "늦은 밤이었다.", "새로 산 코트를 입고 있었다.",
           "휴대폰 배터리가 거의 없었다.", "학기 첫 주였다.", "버스에서 음악을 듣고 있었다.",
           "몇 달 동안 주말 계획을 세워 두었다.",
           "거리는 관광객으로 붐볐다.", "감기에 걸려 머리가 아팠다.", "사촌의 결혼식 날이었다.", "아까 정전이 있었다.",
           "기차에서 소설을 읽고 있었다.", "그해 처음으로 눈이 내렸다.", "새 집으로 막 이사한 참이었다.",
           "모두 명절 준비로 바빴다."],
}

INTENSITY = {  # level → (value, English word, Korean word)
    0: (0.2, "a little", "조금"),
    1: (0.55, "quite", "꽤"),
    2: (0.9, "extremely", "정말 너무"),
}
FEEL = {"en": {"joy": "happy", "fear": "scared", "anger": "angry", "sadness": "sad", "disgust": "disgusted",
               "shame": "ashamed", "guilt": "guilty"},
        "ko": {"joy": "기뻤다", "fear": "무서웠다", "anger": "화가 났다", "sadness": "슬펐다", "disgust": "역겨웠다",
               "shame": "부끄러웠다", "guilt": "죄책감이 들었다"}}
WHEN = [(1.0, "Today", "오늘"), (0.6, "Last month", "지난달"), (0.15, "Years ago", "몇 년 전")]  # propinquity
DURATION = [(0.15, "for a moment", "잠깐"), (0.5, "for days", "며칠 동안"), (0.9, "for weeks", "몇 주 동안")]
EXTENT = [(0.1, "when I was alone", "혼자 있을 때"), (0.5, "with my family there", "가족들 앞에서"),
          (0.9, "in front of everyone", "모두가 보는 앞에서")]
SURPRISE_CUE = ("Suddenly, without any warning,", "갑자기")
REGRET_CUE = ("I keep wishing I had acted differently.", "그때 다르게 했어야 했다는 생각이 계속 든다.")

# Per-emotion baselines of the targets that are not driven by a cue phrase alone.
BASE = {  # emotion: (regret, fecundity, purity, external_cost, redistribution, self_damage, uncertainty)
    "joy": (0.05, 0.8, 0.8, 0.05, 0.6, 0.05, 0.2),
    "fear": (0.15, 0.2, 0.3, 0.4, 0.2, 0.3, 0.85),
    "anger": (0.2, 0.3, 0.3, 0.8, 0.3, 0.3, 0.4),
    "sadness": (0.3, 0.2, 0.4, 0.3, 0.2, 0.4, 0.5),
    "disgust": (0.1, 0.2, 0.2, 0.7, 0.2, 0.2, 0.3),
    "shame": (0.6, 0.2, 0.3, 0.3, 0.2, 0.7, 0.4),
    "guilt": (0.85, 0.2, 0.3, 0.5, 0.3, 0.8, 0.4),
}


def _noisy(rng: random.Random, value: float, sigma: float = 0.05) -> float:
    return round(min(1.0, max(0.0, value + rng.gauss(0.0, sigma))), 4)


def make_record(rng: random.Random, i: int) -> dict:
    lang = "en" if rng.random() < 0.6 else "ko"
    emotion = rng.choice(EMOTIONS)
    slots = {k: rng.choice(v) for k, v in SLOTS[lang].items()}
    situation = rng.choice(SITUATIONS[lang][emotion]).format(**slots)
    level = rng.randrange(3)
    when, duration, extent = rng.choice(WHEN), rng.choice(DURATION), rng.choice(EXTENT)
    surprised = rng.random() < 0.3
    regretful = rng.random() < (0.7 if emotion in ("guilt", "shame") else 0.1)
    value, word_en, word_ko = INTENSITY[level]
    if lang == "en":
        opener = f"{when[1]}, " + (f"{SURPRISE_CUE[0][0].lower()}{SURPRISE_CUE[0][1:]} " if surprised else "")
        text = (f"{rng.choice(CONTEXT['en'])} {opener}{situation} {extent[1]}. "
                f"I felt {word_en} {FEEL['en'][emotion]} {duration[1]}.")
        text += f" {REGRET_CUE[0]}" if regretful else ""
    else:
        opener = f"{when[2]} " + (f"{SURPRISE_CUE[1]} " if surprised else "")
        text = (f"{rng.choice(CONTEXT['ko'])} {opener}{extent[2]} {situation}. "
                f"{duration[2]} {word_ko} {FEEL['ko'][emotion]}.")
        text += f" {REGRET_CUE[1]}" if regretful else ""

    regret0, fecundity, purity, external, redistribution, self_damage, uncertainty = BASE[emotion]
    regret = min(1.0, regret0 + (0.3 if regretful else 0.0))
    bentham = dict(zip(DEFAULT_BENTHAM_NAMES, [
        value, duration[0], 0.5 + 0.3 * (level - 1) / 2, when[0], fecundity, purity, extent[0], external,
        redistribution, self_damage * (0.5 + value / 2),
    ], strict=True))
    surd = {"surprise": 0.85 if surprised else 0.15, "uncertainty": uncertainty,
            "relevance": 0.3 + 0.6 * value, "depth": 0.3 + 0.5 * regret}

    label = EMOTIONS.index(emotion)
    if rng.random() < 0.03:  # label noise
        label = rng.randrange(len(EMOTIONS))

    def maybe(v):
        return None if rng.random() < 0.05 else v

    return {
        "id": f"sample-{i:05d}",
        "text": text,
        "title": situation[:40],
        "action": "reflect" if regretful else "react",
        "label": label,
        "emotions": {"primary": emotion, "secondary": rng.choice(EMOTIONS), "intensity": maybe(_noisy(rng, value))},
        "regret_factor": maybe(_noisy(rng, regret)),
        "bentham_scores": maybe([_noisy(rng, bentham[n]) for n in DEFAULT_BENTHAM_NAMES]),
        "surd_metrics": maybe({n: _noisy(rng, surd[n]) for n in DEFAULT_SURD_NAMES}),
        "timestamp": f"2025-08-{1 + i % 28:02d}T{i % 24:02d}:00:00",
        "language": lang,
    }


def _near_duplicate(rng: random.Random, record: dict, i: int) -> dict:
    text = record["text"]
    k = rng.randrange(len(text) // 2, len(text))
    edited = text[:k] + ("!" if text[k] != "!" else "?") + text[k + 1 :]
    return {**record, "id": f"sample-{i:05d}", "text": edited}


def _invalid_records(start: int) -> list[dict]:
    """One record per broken rule, so the quarantine report shows each kind."""
    good = {"text": "A planted invalid record.", "label": 0}
    broken = [
        {"text": ""},                                      # empty text
        {"text": "   \t "},                                # whitespace-only text
        {"label": 7},                                      # label out of range
        {"label": "joy"},                                  # label of the wrong type
        {"emotions": {"intensity": 1.4}},                  # intensity out of [0, 1]
        {"bentham_scores": [0.5] * 9},                     # wrong Bentham length
        {"regret_factor": float("nan")},                   # NaN target
        {"surd_metrics": {"surprise": 0.2, "novelty": 0.5}},  # unknown SURD key
        {"text": None},                                    # missing text
        {"id": None},                                      # missing id
        {"text": "[No response]"},                         # placeholder answer
        {"id": "sample-00000"},                            # duplicate id
    ]
    return [{"id": f"sample-{start + j:05d}", **good, **change} for j, change in enumerate(broken)]


def generate(n_records: int = 1600, n_near_duplicates: int = 25, seed: int = 20250821) -> list[dict]:
    rng = random.Random(seed)
    records = [make_record(rng, i) for i in range(n_records)]
    for j in range(n_near_duplicates):
        source = records[rng.randrange(len(records))]
        records.append(_near_duplicate(rng, source, n_records + j))
    records += _invalid_records(n_records + n_near_duplicates)
    order = list(range(n_records, len(records)))  # scatter the planted records through the file
    for idx in order:
        pos = rng.randrange(1, idx + 1)
        records.insert(pos, records.pop(idx))
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the bundled sample dataset (JSON Lines).")
    parser.add_argument("--out", default="data/sample.jsonl")
    parser.add_argument("--n", type=int, default=1600, help="valid records before planted duplicates/invalid ones")
    parser.add_argument("--seed", type=int, default=20250821)
    args = parser.parse_args(argv)
    records = generate(args.n, seed=args.seed)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(Path(args.out), lines)
    print(f"wrote {len(records)} records to {args.out}")


if __name__ == "__main__":
    main()
